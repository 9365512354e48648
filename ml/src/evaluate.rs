//! Training and evaluation of the cycle classifiers on rig data: per-target
//! accuracy, per-component false-alarm and miss rates, with stratified 5-fold
//! cross-validation and cross-validation that keeps runs of neighbouring
//! cycles together.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use hydrowatch_models::cycle::FEATURES;
use hydrowatch_models::ensemble::{MemberVerdict, Verdict};
use hydrowatch_models::forest::{ForestError, ForestParams};
pub use hydrowatch_models::forest::{Forests, Target};
use hydrowatch_models::scoring::{CycleMember, ForestMember};

use crate::rigdata::{Conditions, RigData};

/// How one target fared.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetScore {
    /// Cycles judged.
    pub cycles: usize,
    /// Cycles whose label was predicted exactly.
    pub correct: usize,
    /// Exact-label accuracy.
    pub accuracy: f64,
    /// Healthy cycles of this component called degraded, of all healthy ones
    /// (components only).
    pub false_alarm_rate: Option<f64>,
    /// Degraded cycles called healthy, of all degraded ones.
    pub miss_rate: Option<f64>,
    /// False alarms among the healthy cycles recorded at stable conditions
    /// (`profile.txt` stable flag 0): the rig's warm-up excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_alarm_rate_when_stable: Option<f64>,
    /// Components: false-alarm and miss rates when a cycle is called degraded
    /// only if at least this share of the groves votes for a degraded label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarm_thresholds: Vec<AlarmPoint>,
}

/// False alarms and misses at one decision threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlarmPoint {
    /// Share of votes for a degraded label needed to call the cycle degraded.
    pub threshold: f64,
    /// Healthy cycles called degraded, of all healthy ones.
    pub false_alarm_rate: f64,
    /// Degraded cycles called healthy, of all degraded ones.
    pub miss_rate: f64,
}

/// Thresholds the CV reports false alarms and misses at.
pub const ALARM_THRESHOLDS: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// The alarm curve of a component from each cycle's truth and the share of
/// votes for a degraded label.
fn alarm_curve(healthy: i32, truth: &[i32], p_degraded: &[f64]) -> Vec<AlarmPoint> {
    ALARM_THRESHOLDS
        .iter()
        .map(|&threshold| {
            let (mut h, mut fa, mut d, mut miss) = (0, 0, 0, 0);
            for (t, p) in truth.iter().zip(p_degraded) {
                // Votes are tenths: compare with a little slack.
                let alarm = *p >= threshold - 1e-9;
                if *t == healthy {
                    h += 1;
                    fa += usize::from(alarm);
                } else {
                    d += 1;
                    miss += usize::from(!alarm);
                }
            }
            AlarmPoint {
                threshold,
                false_alarm_rate: fa as f64 / h.max(1) as f64,
                miss_rate: miss as f64 / d.max(1) as f64,
            }
        })
        .collect()
}

/// Scores of every target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    /// Per target, in [`Target::ALL`] order.
    pub targets: Vec<(Target, TargetScore)>,
}

fn score(target: Target, truth: &[i32], predicted: &[i32]) -> TargetScore {
    let cycles = truth.len();
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    let (mut healthy, mut alarms, mut degraded, mut missed) = (0, 0, 0, 0);
    if let Some(h) = target.healthy() {
        for (t, p) in truth.iter().zip(predicted) {
            if *t == h {
                healthy += 1;
                alarms += usize::from(*p != h);
            } else {
                degraded += 1;
                missed += usize::from(*p == h);
            }
        }
    }
    let rate = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
    TargetScore {
        cycles,
        correct,
        accuracy: correct as f64 / cycles.max(1) as f64,
        false_alarm_rate: target.healthy().and(rate(alarms, healthy)),
        miss_rate: target.healthy().and(rate(missed, degraded)),
        false_alarm_rate_when_stable: None,
        alarm_thresholds: Vec::new(),
    }
}

/// False alarms among healthy cycles at stable conditions (`stable[i]`).
fn false_alarms_when_stable(
    target: Target,
    truth: &[i32],
    alarms: &[bool],
    stable: &[bool],
) -> Option<f64> {
    let h = target.healthy()?;
    let (mut n, mut fa) = (0usize, 0usize);
    for ((t, a), s) in truth.iter().zip(alarms).zip(stable) {
        if *t == h && *s {
            n += 1;
            fa += usize::from(*a);
        }
    }
    (n > 0).then(|| fa as f64 / n as f64)
}

/// Scores the predictions of `forests` on `features` against `conditions`.
pub fn evaluate(
    forests: &Forests,
    features: &[[f64; FEATURES]],
    conditions: &[Conditions],
) -> Result<Scores, ForestError> {
    let mut targets = Vec::new();
    for (target, forest) in &forests.forests {
        let truth: Vec<i32> = conditions.iter().map(|c| c.label(*target)).collect();
        let predicted = forest.predict(features)?;
        targets.push((*target, score(*target, &truth, &predicted)));
    }
    Ok(Scores { targets })
}

/// The out-of-fold verdicts of the XGBoost member for `scheme` (`runs` or
/// `stratified`) from the CSV `train_xgb.py --cv-predictions` writes, one per
/// cycle of a data set of `cycles` cycles.
pub fn read_xgb_cv(
    path: &std::path::Path,
    scheme: &str,
    cycles: usize,
) -> Result<Vec<Option<MemberVerdict>>, String> {
    use hydrowatch_models::ensemble::Component;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: Vec<Option<MemberVerdict>> = vec![None; cycles];
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || {
            format!(
                "{} line {}: expected scheme,cycle,component,level,p_degraded[,shares]",
                path.display(),
                n + 1
            )
        };
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 && f.len() != 6 {
            return Err(bad());
        }
        if f[0] != scheme {
            continue;
        }
        let cycle: usize = f[1].parse().map_err(|_| bad())?;
        let component = Component::parse(f[2]).ok_or_else(bad)?;
        let level: i32 = f[3].parse().map_err(|_| bad())?;
        let p: f64 = f[4].parse().map_err(|_| bad())?;
        let slot = out.get_mut(cycle).ok_or_else(|| {
            format!(
                "{}: cycle {cycle} beyond the {cycles} cycles of the data",
                path.display()
            )
        })?;
        let v = slot.get_or_insert_with(|| MemberVerdict {
            model: "xgboost".into(),
            model_version: "cv".into(),
            degraded: Default::default(),
            levels: Default::default(),
            level_shares: Default::default(),
            novelty: None,
        });
        v.degraded.insert(component, p);
        v.levels.insert(component, level);
        // `level:probability;…`, when the script wrote them.
        if let Some(shares) = f.get(5).filter(|s| !s.is_empty()) {
            let mut map = std::collections::BTreeMap::new();
            for pair in shares.split(';') {
                let (l, p) = pair.split_once(':').ok_or_else(bad)?;
                map.insert(
                    l.parse::<i32>().map_err(|_| bad())?,
                    p.parse::<f64>().map_err(|_| bad())?,
                );
            }
            v.level_shares.insert(component, map);
        }
    }
    Ok(out)
}

/// Scores of the verdicts of each cycle combined as the running ensemble
/// combines them (`ensemble::combine` with `config`): each member's verdict
/// of cycle `i` is `members[m][i]`.
pub fn ensemble_scores(
    config: &hydrowatch_models::ensemble::EnsembleConfig,
    members: &[&[Option<MemberVerdict>]],
    conditions: &[Conditions],
) -> Scores {
    let verdicts: Vec<Verdict> = (0..conditions.len())
        .map(|i| {
            let taking_part: Vec<MemberVerdict> = members
                .iter()
                .filter_map(|m| m.get(i).cloned().flatten())
                .collect();
            hydrowatch_models::ensemble::combine(config, &taking_part)
        })
        .collect();
    verdict_scores(&verdicts, conditions)
}

/// Scores of one verdict per cycle against `conditions`: per component,
/// exact-level accuracy, and false alarms and misses of the degraded call.
pub fn verdict_scores(verdicts: &[Verdict], conditions: &[Conditions]) -> Scores {
    let stable: Vec<bool> = conditions.iter().map(|c| c.stable == 0).collect();
    Scores {
        targets: Target::ALL
            .iter()
            .filter_map(|t| Some((*t, t.component()?)))
            .map(|(target, component)| {
                let truth: Vec<i32> = conditions.iter().map(|c| c.label(target)).collect();
                let (predicted, alarms): (Vec<i32>, Vec<bool>) = verdicts
                    .iter()
                    .map(|v| {
                        let h = v.health.iter().find(|h| h.component == component);
                        (
                            h.and_then(|h| h.level).unwrap_or(i32::MIN),
                            h.is_some_and(|h| h.degraded),
                        )
                    })
                    .unzip();
                let mut s = score_alarms(target, &truth, &predicted, &alarms);
                s.false_alarm_rate_when_stable =
                    false_alarms_when_stable(target, &truth, &alarms, &stable);
                (target, s)
            })
            .collect(),
    }
}

/// Scores of each member of `scorer` that names condition levels (judged
/// alone, as an ensemble of one) and of the whole ensemble, on `features`
/// against `conditions`.
pub fn evaluate_members(
    scorer: &hydrowatch_models::scoring::Scorer,
    features: &[[f64; FEATURES]],
    conditions: &[Conditions],
) -> Vec<(String, Scores)> {
    let verdicts: Vec<Verdict> = features.iter().map(|f| scorer.score_features(f)).collect();
    let mut out = Vec::new();
    for (name, _) in scorer.members() {
        let alone: Vec<Option<MemberVerdict>> = verdicts
            .iter()
            .map(|v| {
                v.per_model
                    .iter()
                    .find(|m| m.model == name && !m.levels.is_empty())
                    .cloned()
            })
            .collect();
        if alone.iter().any(Option::is_some) {
            out.push((
                name.to_owned(),
                ensemble_scores(scorer.config(), &[&alone], conditions),
            ));
        }
    }
    out.push(("ensemble".to_owned(), verdict_scores(&verdicts, conditions)));
    out
}

/// Like [`score`], but false alarms and misses from explicit degraded calls.
fn score_alarms(target: Target, truth: &[i32], predicted: &[i32], alarms: &[bool]) -> TargetScore {
    let mut s = score(target, truth, predicted);
    if let Some(h) = target.healthy() {
        let (mut healthy, mut fa, mut degraded, mut miss) = (0, 0, 0, 0);
        for (t, a) in truth.iter().zip(alarms) {
            if *t == h {
                healthy += 1;
                fa += usize::from(*a);
            } else {
                degraded += 1;
                miss += usize::from(!*a);
            }
        }
        s.false_alarm_rate = (healthy > 0).then(|| fa as f64 / healthy as f64);
        s.miss_rate = (degraded > 0).then(|| miss as f64 / degraded as f64);
    }
    s
}

/// Fold of each cycle: runs of consecutive cycles with the same component
/// conditions stay together; runs are dealt to the `k` folds in turn.
pub fn folds_by_runs(conditions: &[Conditions], k: usize) -> Vec<usize> {
    let key = |c: &Conditions| (c.cooler, c.valve, c.pump, c.accumulator);
    let mut folds = Vec::with_capacity(conditions.len());
    let mut run = 0;
    for (i, c) in conditions.iter().enumerate() {
        if i > 0 && key(c) != key(&conditions[i - 1]) {
            run += 1;
        }
        folds.push(run % k);
    }
    folds
}

/// Fold of each cycle: within each combination of component conditions, the
/// cycles (in a seeded shuffled order) are dealt to the `k` folds in turn.
pub fn folds_stratified(conditions: &[Conditions], k: usize, seed: u64) -> Vec<usize> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(i32, i32, i32, i32), Vec<usize>> = BTreeMap::new();
    for (i, c) in conditions.iter().enumerate() {
        groups
            .entry((c.cooler, c.valve, c.pump, c.accumulator))
            .or_default()
            .push(i);
    }
    let mut folds = vec![0; conditions.len()];
    let mut state = seed;
    for members in groups.values_mut() {
        // Fisher–Yates with SplitMix64.
        for i in (1..members.len()).rev() {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            members.swap(i, (z % (i as u64 + 1)) as usize);
        }
        for (n, i) in members.iter().enumerate() {
            folds[*i] = n % k;
        }
    }
    folds
}

/// Cross-validated scores: for each fold, train on the others and judge it.
/// Also returns each cycle's out-of-fold verdict of the forest as an
/// ensemble member, to combine with other members' (see [`ensemble_scores`]).
pub fn cross_validate(
    features: &[[f64; FEATURES]],
    conditions: &[Conditions],
    folds: &[usize],
    params: &ForestParams,
) -> Result<(Scores, Vec<Option<MemberVerdict>>), ForestError> {
    let mut out_of_fold: Vec<Option<MemberVerdict>> = vec![None; features.len()];
    let k = folds.iter().max().map_or(0, |m| m + 1);
    let mut truth: Vec<Vec<i32>> = vec![Vec::new(); Target::ALL.len()];
    let mut predicted: Vec<Vec<i32>> = vec![Vec::new(); Target::ALL.len()];
    let mut p_degraded: Vec<Vec<f64>> = vec![Vec::new(); Target::ALL.len()];
    let mut stable: Vec<Vec<bool>> = vec![Vec::new(); Target::ALL.len()];
    for fold in 0..k {
        let (train, test): (Vec<usize>, Vec<usize>) =
            (0..features.len()).partition(|&i| folds[i] != fold);
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let pick_x = |idx: &[usize]| idx.iter().map(|&i| features[i]).collect::<Vec<_>>();
        let pick_c = |idx: &[usize]| {
            idx.iter()
                .map(|&i| conditions[i].labels())
                .collect::<Vec<_>>()
        };
        let forests = Forests::train(&pick_x(&train), &pick_c(&train), params)?;
        let test_x = pick_x(&test);
        for (t, (target, forest)) in forests.forests.iter().enumerate() {
            truth[t].extend(test.iter().map(|&i| conditions[i].label(*target)));
            stable[t].extend(test.iter().map(|&i| conditions[i].stable == 0));
            predicted[t].extend(forest.predict(&test_x)?);
            if let Some(h) = target.healthy() {
                p_degraded[t].extend(
                    forest
                        .votes(&test_x)?
                        .iter()
                        .map(|v| 1.0 - v.get(&h).copied().unwrap_or(0.0)),
                );
            }
        }
        let member = ForestMember::new(&forests, "cv").map_err(|e| ForestError(e.to_string()))?;
        for (&i, row) in test.iter().zip(&test_x) {
            out_of_fold[i] = Some(member.judge(row).map_err(|e| ForestError(e.to_string()))?);
        }
    }
    let scores = Scores {
        targets: Target::ALL
            .iter()
            .enumerate()
            .map(|(t, target)| {
                let mut s = score(*target, &truth[t], &predicted[t]);
                if let Some(h) = target.healthy() {
                    s.alarm_thresholds = alarm_curve(h, &truth[t], &p_degraded[t]);
                    let alarms: Vec<bool> = predicted[t].iter().map(|p| *p != h).collect();
                    s.false_alarm_rate_when_stable =
                        false_alarms_when_stable(*target, &truth[t], &alarms, &stable[t]);
                }
                (*target, s)
            })
            .collect(),
    };
    Ok((scores, out_of_fold))
}

/// How the novelty detector fared on one withheld fault class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WithheldClass {
    pub target: Target,
    /// Its withheld level.
    pub level: i32,
    /// Cycles of that level.
    pub cycles: usize,
    /// Of them, judged novel by a detector fitted without any of them.
    pub hit_rate: f64,
    /// Cycles of the known classes judged novel, in held-out folds that keep
    /// runs together.
    pub false_alarm_rate: f64,
}

/// For each fault level of each component: fit the novelty detector on the
/// cycles without that level (in 5 run-keeping folds, each time leaving one
/// fold of them out), and count how many cycles of the withheld level it
/// flags and how many held-out known cycles it flags by mistake.
pub fn novelty_withheld(
    features: &[[f64; FEATURES]],
    conditions: &[Conditions],
    params: &hydrowatch_models::novelty::NoveltyParams,
) -> Result<Vec<WithheldClass>, String> {
    use hydrowatch_models::novelty::Novelty;
    let folds = folds_by_runs(conditions, 5);
    let mut out = Vec::new();
    for target in &Target::ALL[..4] {
        let healthy = target.healthy().unwrap_or_default();
        let mut levels: Vec<i32> = conditions.iter().map(|c| c.label(*target)).collect();
        levels.sort_unstable();
        levels.dedup();
        for level in levels.into_iter().filter(|l| *l != healthy) {
            let withheld: Vec<usize> = (0..features.len())
                .filter(|&i| conditions[i].label(*target) == level)
                .collect();
            let (mut hits, mut tried, mut alarms, mut known_tested) = (0, 0, 0, 0);
            for fold in 0..5 {
                let fit: Vec<Vec<f64>> = (0..features.len())
                    .filter(|&i| conditions[i].label(*target) != level && folds[i] != fold)
                    .map(|i| features[i].to_vec())
                    .collect();
                let model = Novelty::fit(&fit, params).map_err(|e| e.to_string())?;
                for &i in &withheld {
                    tried += 1;
                    hits += usize::from(model.score(&features[i]) > 1.0);
                }
                for i in (0..features.len())
                    .filter(|&i| conditions[i].label(*target) != level && folds[i] == fold)
                {
                    known_tested += 1;
                    alarms += usize::from(model.score(&features[i]) > 1.0);
                }
            }
            out.push(WithheldClass {
                target: *target,
                level,
                cycles: withheld.len(),
                hit_rate: hits as f64 / tried.max(1) as f64,
                false_alarm_rate: alarms as f64 / known_tested.max(1) as f64,
            });
        }
    }
    Ok(out)
}

/// A table of the novelty detector's results.
pub fn render_novelty(rows: &[WithheldClass]) -> String {
    let mut out = String::from(
        "novelty detector, fitted without the withheld class (5 run-keeping folds)\n  withheld            cycles   hit rate   false alarms on known cycles\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<12} {:>5}   {:>6}   {:>7.2} %   {:>7.2} %",
            format!("{:?}", r.target).to_lowercase(),
            r.level,
            r.cycles,
            r.hit_rate * 100.0,
            r.false_alarm_rate * 100.0
        );
    }
    out
}

/// The features of every cycle of `data`.
pub fn features_of(data: &RigData) -> Result<Vec<[f64; FEATURES]>, String> {
    data.cycles
        .iter()
        .enumerate()
        .map(|(i, c)| c.features().map_err(|e| format!("cycle {}: {e}", i + 1)))
        .collect()
}

/// A human-readable table of `scores` under `title`.
pub fn render(title: &str, scores: &Scores) -> String {
    let pct = |x: Option<f64>| x.map_or("—".to_owned(), |x| format!("{:.2} %", x * 100.0));
    let mut out =
        format!("{title}\n  target        accuracy   false alarms   (when stable)   misses\n");
    for (target, s) in &scores.targets {
        let _ = writeln!(
            out,
            "  {:<12} {:>9}   {:>12}   {:>13}   {:>6}   ({}/{})",
            format!("{target:?}").to_lowercase(),
            pct(Some(s.accuracy)),
            pct(s.false_alarm_rate),
            pct(s.false_alarm_rate_when_stable),
            pct(s.miss_rate),
            s.correct,
            s.cycles
        );
    }
    for (target, s) in scores
        .targets
        .iter()
        .filter(|(_, s)| !s.alarm_thresholds.is_empty())
    {
        let points: Vec<String> = s
            .alarm_thresholds
            .iter()
            .map(|p| {
                format!(
                    "≥{:.1}: {:.2} %/{:.2} %",
                    p.threshold,
                    p.false_alarm_rate * 100.0,
                    p.miss_rate * 100.0
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {:<12} degraded votes → false alarms/misses  {}",
            format!("{target:?}").to_lowercase(),
            points.join("  ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(cooler: i32) -> Conditions {
        Conditions {
            cooler,
            valve: 100,
            pump: 0,
            accumulator: 130,
            stable: 0,
        }
    }

    #[test]
    fn runs_stay_in_one_fold() {
        let conditions = [c(3), c(3), c(20), c(20), c(20), c(100), c(3)];
        assert_eq!(folds_by_runs(&conditions, 2), vec![0, 0, 1, 1, 1, 0, 1]);
    }

    #[test]
    fn stratified_folds_spread_each_class() {
        let conditions: Vec<Conditions> =
            (0..30).map(|i| c(if i < 10 { 3 } else { 100 })).collect();
        let folds = folds_stratified(&conditions, 5, 7);
        for fold in 0..5 {
            let of = |cooler: i32| {
                (0..30)
                    .filter(|&i| folds[i] == fold && conditions[i].cooler == cooler)
                    .count()
            };
            assert_eq!((of(3), of(100)), (2, 4));
        }
    }

    #[test]
    fn false_alarms_and_misses_are_counted_per_component() {
        let s = score(
            Target::Cooler,
            &[100, 100, 100, 3, 20],
            &[100, 20, 100, 100, 3],
        );
        assert_eq!((s.correct, s.cycles), (2, 5));
        assert_eq!(s.false_alarm_rate, Some(1.0 / 3.0));
        assert_eq!(s.miss_rate, Some(0.5));
        assert_eq!(
            score(Target::Stable, &[0, 1], &[0, 0]).false_alarm_rate,
            None
        );
    }
}
