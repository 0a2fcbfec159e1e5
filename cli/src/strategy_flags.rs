//! The flags that set a service's rollout strategy, shared by `berth run`
//! and `berth set strategy`.

use berth_model::deployment::{Amount, Strategy, StrategyKind};
use clap::{Args, ValueEnum};

/// Strategy flags, for `berth run` and `berth set strategy`.
#[derive(Debug, Clone, Default, Args)]
pub struct StrategyFlags {
    /// How a new revision replaces the old: rolling (new pods beside the
    /// old) or recreate (stop all, then start each in its old place; the
    /// default for --stateful).
    #[arg(long = "strategy", value_enum, value_name = "KIND")]
    pub kind: Option<StrategyArg>,
    /// Pods beyond the replicas while rolling: a count or a share (25%).
    #[arg(long = "max-surge", value_name = "N|P%")]
    pub max_surge: Option<Amount>,
    /// Replicas that may be unavailable while rolling (default 0).
    #[arg(long = "max-unavailable", value_name = "N|P%")]
    pub max_unavailable: Option<Amount>,
    /// A new pod counts once it has been ready this many seconds.
    #[arg(long = "min-ready", value_name = "SECS")]
    pub min_ready: Option<u32>,
    /// A rollout with no progress for this many seconds fails (default
    /// 600).
    #[arg(long = "progress-deadline", value_name = "SECS")]
    pub progress_deadline: Option<u32>,
    /// A failed rollout returns to the last complete revision by itself.
    #[arg(long = "auto-rollback", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub auto_rollback: Option<bool>,
    /// Start this many new pods beside the old ones and wait for
    /// `berth rollout promote`.
    #[arg(long, value_name = "N")]
    pub canary: Option<u32>,
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// New pods beside the old.
    Rolling,
    /// Stop all, then start all, each in its old place.
    Recreate,
}

impl StrategyFlags {
    /// `strategy` with these flags set on it.
    pub fn apply(&self, mut strategy: Strategy) -> Strategy {
        if let Some(kind) = self.kind {
            strategy.kind = Some(match kind {
                StrategyArg::Rolling => StrategyKind::Rolling,
                StrategyArg::Recreate => StrategyKind::Recreate,
            });
        }
        strategy.max_surge = self.max_surge.or(strategy.max_surge);
        strategy.max_unavailable = self.max_unavailable.or(strategy.max_unavailable);
        strategy.min_ready_seconds = self.min_ready.unwrap_or(strategy.min_ready_seconds);
        strategy.progress_deadline_seconds = self
            .progress_deadline
            .or(strategy.progress_deadline_seconds);
        strategy.auto_rollback = self.auto_rollback.unwrap_or(strategy.auto_rollback);
        strategy.canary = self.canary.unwrap_or(strategy.canary);
        strategy
    }
}
