//! Every OTP rule of the supervision layer, proven with paused time.

use std::sync::Arc;
use std::time::Duration;

use hydrowatch_actors::supervision::{
    spawn_fn, AdminOp, Backoff, ChildSpec, Intensity, RestartType, Strategy, SupervisionCmd,
    Supervisor, SupervisorArgs, SupervisorControl, SupervisorMsg, SupervisorSpec,
};
use hydrowatch_actors::{ActorKind, LifecycleStatus, Registry};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort};

/// A child that remembers a number and can be told to fail in different ways.
struct Worker;

enum WorkerMsg {
    Set(u32),
    Get(RpcReplyPort<u32>),
    Panic,
    Fail,
    StopNormally,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = u32;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<WorkerMsg>, _: ()) -> Result<u32, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        state: &mut u32,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Set(v) => *state = v,
            WorkerMsg::Get(reply) => {
                let _ = reply.send(*state);
            }
            WorkerMsg::Panic => panic!("worker told to panic"),
            WorkerMsg::Fail => return Err("worker told to fail".into()),
            WorkerMsg::StopNormally => myself.stop(None),
        }
        Ok(())
    }
}

fn worker(id: &str, restart: RestartType) -> ChildSpec {
    ChildSpec {
        id: id.into(),
        kind: ActorKind::Sensor,
        restart,
        start: spawn_fn(|| (Worker, ())),
        mailbox: None,
    }
}

fn spec(strategy: Strategy, max_restarts: u32, within_secs: u64) -> SupervisorSpec {
    SupervisorSpec {
        strategy,
        intensity: Intensity {
            max_restarts,
            within: Duration::from_secs(within_secs),
        },
        backoff: Backoff::NONE,
        shutdown_timeout: Duration::from_secs(1),
    }
}

/// Backoff doubling from `initial` up to `max`, without jitter (deterministic).
fn doubling(initial: Duration, max: Duration) -> Backoff {
    Backoff {
        initial,
        max,
        multiplier: 2.0,
        jitter: 0.0,
    }
}

async fn start_supervisor(
    registry: &Registry,
    path: &str,
    spec: SupervisorSpec,
    children: Vec<ChildSpec>,
) -> ActorRef<SupervisorMsg> {
    let (sup, _) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            path: path.into(),
            spec,
            registry: registry.clone(),
            children,
        },
    )
    .await
    .expect("supervisor starts");
    sup
}

fn worker_ref(registry: &Registry, path: &str) -> Option<ActorRef<WorkerMsg>> {
    registry.cell(path).map(ActorRef::from)
}

async fn value(registry: &Registry, path: &str) -> u32 {
    let w = worker_ref(registry, path).expect("worker running");
    ractor::call_t!(w, WorkerMsg::Get, 1000).expect("worker answers")
}

async fn set(registry: &Registry, path: &str, v: u32) {
    worker_ref(registry, path)
        .expect("worker running")
        .cast(WorkerMsg::Set(v))
        .unwrap();
}

async fn crash(registry: &Registry, path: &str, how: WorkerMsg) {
    worker_ref(registry, path)
        .expect("worker running")
        .cast(how)
        .unwrap();
    settle().await;
}

/// Lets every actor run until idle (time is paused, so this is instant).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn id_of(registry: &Registry, path: &str) -> Option<ractor::ActorId> {
    registry.cell(path).map(|c| c.get_id())
}

async fn three_workers(strategy: Strategy) -> (Registry, ActorRef<SupervisorMsg>) {
    let registry = Registry::new();
    let sup = start_supervisor(
        &registry,
        "group",
        spec(strategy, 5, 10),
        vec![
            worker("a", RestartType::Permanent),
            worker("b", RestartType::Permanent),
            worker("c", RestartType::Permanent),
        ],
    )
    .await;
    for (i, p) in ["group/a", "group/b", "group/c"].iter().enumerate() {
        set(&registry, p, i as u32 + 1).await;
    }
    settle().await;
    (registry, sup)
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_child() {
    let (registry, _sup) = three_workers(Strategy::OneForOne).await;
    let before: Vec<_> = ["group/a", "group/b", "group/c"]
        .iter()
        .map(|p| id_of(&registry, p))
        .collect();
    crash(&registry, "group/b", WorkerMsg::Panic).await;

    assert_eq!(id_of(&registry, "group/a"), before[0]);
    assert_ne!(id_of(&registry, "group/b"), before[1]);
    assert!(id_of(&registry, "group/b").is_some());
    assert_eq!(id_of(&registry, "group/c"), before[2]);
    // Siblings keep their state; the restarted child starts fresh.
    assert_eq!(value(&registry, "group/a").await, 1);
    assert_eq!(value(&registry, "group/b").await, 0);
    assert_eq!(value(&registry, "group/c").await, 3);
    let info = registry.info("group/b").unwrap();
    assert_eq!(info.restart_count, 1);
    assert_eq!(info.status, LifecycleStatus::Running);
    assert!(info.last_error.unwrap().contains("worker told to panic"));
}

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_every_child() {
    let (registry, _sup) = three_workers(Strategy::OneForAll).await;
    let before: Vec<_> = ["group/a", "group/b", "group/c"]
        .iter()
        .map(|p| id_of(&registry, p))
        .collect();
    crash(&registry, "group/b", WorkerMsg::Fail).await;
    for (p, old) in ["group/a", "group/b", "group/c"].iter().zip(before) {
        let now = id_of(&registry, p);
        assert!(now.is_some(), "{p} running");
        assert_ne!(now, old, "{p} restarted");
        assert_eq!(value(&registry, p).await, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    let (registry, _sup) = three_workers(Strategy::RestForOne).await;
    let before: Vec<_> = ["group/a", "group/b", "group/c"]
        .iter()
        .map(|p| id_of(&registry, p))
        .collect();
    crash(&registry, "group/b", WorkerMsg::Panic).await;
    assert_eq!(id_of(&registry, "group/a"), before[0]);
    assert_eq!(value(&registry, "group/a").await, 1);
    assert_ne!(id_of(&registry, "group/b"), before[1]);
    assert_ne!(id_of(&registry, "group/c"), before[2]);
    assert_eq!(value(&registry, "group/c").await, 0);
}

#[tokio::test(start_paused = true)]
async fn restart_types_decide_who_comes_back() {
    let registry = Registry::new();
    let _sup = start_supervisor(
        &registry,
        "g",
        spec(Strategy::OneForOne, 10, 10),
        vec![
            worker("perm", RestartType::Permanent),
            worker("trans", RestartType::Transient),
            worker("temp", RestartType::Temporary),
            worker("trans2", RestartType::Transient),
        ],
    )
    .await;
    settle().await;

    // Permanent: back even after a normal exit.
    let old = id_of(&registry, "g/perm");
    crash(&registry, "g/perm", WorkerMsg::StopNormally).await;
    assert!(id_of(&registry, "g/perm").is_some());
    assert_ne!(id_of(&registry, "g/perm"), old);

    // Transient: a normal exit is final...
    crash(&registry, "g/trans", WorkerMsg::StopNormally).await;
    assert!(id_of(&registry, "g/trans").is_none());
    assert_eq!(
        registry.info("g/trans").unwrap().status,
        LifecycleStatus::Stopped
    );
    // ...an abnormal one is not.
    let old = id_of(&registry, "g/trans2");
    crash(&registry, "g/trans2", WorkerMsg::Panic).await;
    assert!(id_of(&registry, "g/trans2").is_some());
    assert_ne!(id_of(&registry, "g/trans2"), old);

    // Temporary: never restarted, and forgotten.
    crash(&registry, "g/temp", WorkerMsg::Panic).await;
    assert!(id_of(&registry, "g/temp").is_none());
    assert!(!registry.contains("g/temp"));
}

#[tokio::test(start_paused = true)]
async fn exceeding_intensity_escalates_to_the_parent() {
    let registry = Registry::new();
    let mid_registry = registry.clone();
    let mid = ChildSpec {
        id: "mid".into(),
        kind: ActorKind::Supervisor,
        restart: RestartType::Permanent,
        start: spawn_fn(move || {
            (
                Supervisor,
                SupervisorArgs {
                    path: "top/mid".into(),
                    spec: spec(Strategy::OneForOne, 2, 10),
                    registry: mid_registry.clone(),
                    children: vec![
                        worker("w", RestartType::Permanent),
                        worker("x", RestartType::Permanent),
                    ],
                },
            )
        }),
        mailbox: None,
    };
    let top = start_supervisor(
        &registry,
        "top",
        spec(Strategy::OneForOne, 1, 60),
        vec![mid],
    )
    .await;
    settle().await;
    set(&registry, "top/mid/x", 7).await;
    let mid_id = id_of(&registry, "top/mid");

    // Two restarts within 10 s are tolerated by `mid`.
    crash(&registry, "top/mid/w", WorkerMsg::Panic).await;
    crash(&registry, "top/mid/w", WorkerMsg::Panic).await;
    assert_eq!(id_of(&registry, "top/mid"), mid_id);
    assert_eq!(value(&registry, "top/mid/x").await, 7, "sibling untouched");

    // The third exceeds it: `mid` stops its children and fails; `top` restarts it.
    crash(&registry, "top/mid/w", WorkerMsg::Panic).await;
    assert_ne!(id_of(&registry, "top/mid"), mid_id, "mid was restarted");
    assert_eq!(registry.info("top/mid").unwrap().restart_count, 1);
    assert!(registry
        .info("top/mid")
        .unwrap()
        .last_error
        .unwrap()
        .contains("restart intensity exceeded"));
    assert_eq!(
        value(&registry, "top/mid/x").await,
        0,
        "x restarted with mid"
    );

    // A second escalation within top's period exceeds top's own intensity (1 in 60 s):
    // top gives up and stops.
    for _ in 0..3 {
        crash(&registry, "top/mid/w", WorkerMsg::Panic).await;
    }
    assert_eq!(top.get_status(), ActorStatus::Stopped);
    assert!(registry.cell("top/mid").is_none());
    assert_eq!(
        registry.info("top/mid").unwrap().status,
        LifecycleStatus::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_beyond_the_period_do_not_escalate() {
    let registry = Registry::new();
    let sup = start_supervisor(
        &registry,
        "g",
        spec(Strategy::OneForOne, 2, 10),
        vec![worker("w", RestartType::Permanent)],
    )
    .await;
    settle().await;
    for _ in 0..6 {
        crash(&registry, "g/w", WorkerMsg::Panic).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    assert_eq!(sup.get_status(), ActorStatus::Running);
    assert_eq!(registry.info("g/w").unwrap().restart_count, 6);
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_restarts_exponentially() {
    let registry = Registry::new();
    let mut s = spec(Strategy::OneForOne, 10, 60);
    s.backoff = doubling(Duration::from_secs(1), Duration::from_secs(3));
    let _sup = start_supervisor(&registry, "g", s, vec![worker("w", RestartType::Permanent)]).await;
    settle().await;

    for expected in [1000u64, 2000, 3000, 3000] {
        let start = tokio::time::Instant::now();
        crash(&registry, "g/w", WorkerMsg::Panic).await;
        assert!(registry.cell("g/w").is_none());
        assert_eq!(
            registry.info("g/w").unwrap().status,
            LifecycleStatus::Restarting
        );
        tokio::time::sleep_until(start + Duration::from_millis(expected - 10)).await;
        assert!(registry.cell("g/w").is_none(), "not before {expected} ms");
        tokio::time::sleep_until(start + Duration::from_millis(expected + 10)).await;
        assert!(registry.cell("g/w").is_some(), "back after {expected} ms");
    }
}

#[tokio::test(start_paused = true)]
async fn admin_stop_start_restart_and_dynamic_children() {
    let registry = Registry::new();
    let sup = start_supervisor(
        &registry,
        "g",
        spec(Strategy::OneForOne, 1, 10),
        vec![worker("w", RestartType::Permanent)],
    )
    .await;
    settle().await;
    let control: Arc<dyn SupervisorControl> = Arc::new(sup.clone());
    let admin = |op| {
        let sup = sup.clone();
        async move {
            ractor::call_t!(
                sup,
                |reply| SupervisorMsg::Cmd(SupervisionCmd::Admin {
                    child: "w".into(),
                    op,
                    reply
                }),
                1000
            )
            .unwrap()
        }
    };

    admin(AdminOp::Stop).await.unwrap();
    settle().await;
    assert!(registry.cell("g/w").is_none());
    assert_eq!(
        registry.info("g/w").unwrap().status,
        LifecycleStatus::Stopped
    );
    admin(AdminOp::Start).await.unwrap();
    assert!(registry.cell("g/w").is_some());
    assert!(admin(AdminOp::Start).await.is_err(), "already running");
    let old = id_of(&registry, "g/w");
    // Admin restarts are deliberate: they do not count against intensity.
    for _ in 0..3 {
        admin(AdminOp::Restart).await.unwrap();
    }
    settle().await;
    assert_ne!(id_of(&registry, "g/w"), old);
    assert_eq!(sup.get_status(), ActorStatus::Running);

    control.send(SupervisionCmd::AddChild {
        spec: worker("dyn", RestartType::Temporary),
        reply: None,
    });
    settle().await;
    assert!(registry.cell("g/dyn").is_some());
    control.send(SupervisionCmd::RemoveChild {
        child: "dyn".into(),
    });
    settle().await;
    assert!(!registry.contains("g/dyn"));
}

#[tokio::test(start_paused = true)]
async fn overlapping_restart_delays_do_not_cancel_each_other() {
    let registry = Registry::new();
    let mut s = spec(Strategy::OneForOne, 10, 60);
    s.backoff = doubling(Duration::from_millis(100), Duration::from_secs(1));
    let _sup = start_supervisor(
        &registry,
        "g",
        s,
        vec![
            worker("a", RestartType::Permanent),
            worker("b", RestartType::Permanent),
        ],
    )
    .await;
    settle().await;
    crash(&registry, "g/a", WorkerMsg::Panic).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    crash(&registry, "g/b", WorkerMsg::Panic).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(registry.cell("g/a").is_some(), "a restarted");
    assert!(registry.cell("g/b").is_some(), "b restarted");
}

#[tokio::test(start_paused = true)]
async fn a_child_that_fails_to_start_is_retried_with_the_rest_of_its_round() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    // `b` refuses to start once (after its first crash); `c` comes after it in a
    // rest_for_one round and must not be forgotten.
    let refusals = Arc::new(AtomicU32::new(0));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaky = {
        let refusals = refusals.clone();
        let armed = armed.clone();
        ChildSpec {
            id: "b".into(),
            kind: ActorKind::Sensor,
            restart: RestartType::Permanent,
            start: Arc::new(move |sup| {
                let refuse = armed.swap(false, Ordering::SeqCst);
                if refuse {
                    refusals.fetch_add(1, Ordering::SeqCst);
                }
                Box::pin(async move {
                    if refuse {
                        return Err(ractor::SpawnErr::StartupFailed("not yet".into()));
                    }
                    let (r, _) = Actor::spawn_linked(None, Worker, (), sup).await?;
                    Ok(r.get_cell())
                })
            }),
            mailbox: None,
        }
    };
    let mut s = spec(Strategy::RestForOne, 10, 60);
    s.backoff = doubling(Duration::from_millis(100), Duration::from_secs(1));
    let registry = Registry::new();
    let _sup = start_supervisor(
        &registry,
        "g",
        s,
        vec![
            worker("a", RestartType::Permanent),
            flaky,
            worker("c", RestartType::Permanent),
        ],
    )
    .await;
    settle().await;
    armed.store(true, Ordering::SeqCst);
    crash(&registry, "g/b", WorkerMsg::Panic).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refusals.load(Ordering::SeqCst), 1, "b refused once");
    assert!(registry.cell("g/b").is_some(), "b started on retry");
    assert!(registry.cell("g/c").is_some(), "c not forgotten");
}
