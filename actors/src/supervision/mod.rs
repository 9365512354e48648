//! OTP supervision on top of ractor.
//!
//! ractor links children to parents and reports their exits, but its default is
//! to stop the parent when any child exits. [`Supervision`] adds what Erlang/OTP
//! supervisors do: restart strategies, child restart types, restart intensity
//! with escalation, plus a restart backoff. Any actor can embed it (the
//! equipment actor supervises its sensors while holding its own state);
//! [`Supervisor`] is the plain supervisor actor built on it.

mod core;
mod spec;
mod supervisor;

pub use self::core::{
    child_path, spawn_fn, AdminError, AdminOp, ChildSpec, StartFn, Supervision, SupervisionCmd,
    SupervisorControl,
};
pub use spec::{Backoff, Intensity, RestartType, Strategy, SupervisorSpec};
pub use supervisor::{Supervisor, SupervisorArgs, SupervisorMsg};
