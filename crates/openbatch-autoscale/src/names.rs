//! The fixed vocabulary: service-defined variables, constants, keywords, functions and
//! sample methods. Names are case-sensitive.

use crate::limits::TICKS_PER_SECOND;
use crate::model::NodeDeallocationOption;

/// Read-only service variables backed by a sample history (spec §5.2). The retired resource
/// metrics stay accepted; they simply have no samples unless the caller provides some.
const METRICS: &[&str] = &[
    "$CPUPercent",
    "$WallClockSeconds",
    "$MemoryBytes",
    "$DiskBytes",
    "$DiskReadBytes",
    "$DiskWriteBytes",
    "$DiskReadOps",
    "$DiskWriteOps",
    "$NetworkInBytes",
    "$NetworkOutBytes",
    "$SampleNodeCount",
    "$ActiveTasks",
    "$RunningTasks",
    "$PendingTasks",
    "$SucceededTasks",
    "$FailedTasks",
    "$UsableNodeCount",
    "$PreemptedNodeCount",
];

/// A read-only variable whose value comes from the pool, not from samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolScalar {
    CurrentDedicated,
    CurrentLowPriority,
    TaskSlotsPerNode,
}

/// One of the two read-write node targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Dedicated,
    LowPriority,
}

/// What a name in a formula refers to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NameKind {
    /// A sampled read-only variable; the string is its canonical name.
    Metric(&'static str),
    Pool(PoolScalar),
    /// A target; `alias` for the pre-2017 `$TargetDedicated` / `$TargetLowPriority`.
    Target {
        target: Target,
        alias: bool,
    },
    Deallocation,
    /// A `TimeInterval_*` constant, in ticks.
    Interval(i64),
    Keyword(NodeDeallocationOption),
    Function(Function),
    /// Anything else: a user variable (with or without `$`).
    User,
}

impl NameKind {
    /// Read-only names: assigning them is an error.
    pub(crate) fn is_read_only(self) -> bool {
        matches!(self, NameKind::Metric(_) | NameKind::Pool(_))
    }

    /// Reserved names: neither assignable nor user variables.
    pub(crate) fn is_reserved(self) -> bool {
        matches!(
            self,
            NameKind::Interval(_) | NameKind::Keyword(_) | NameKind::Function(_)
        )
    }
}

pub(crate) fn classify(name: &str) -> NameKind {
    if let Some(metric) = METRICS.iter().find(|m| **m == name) {
        return NameKind::Metric(metric);
    }
    let second = TICKS_PER_SECOND;
    match name {
        "$CurrentDedicatedNodes" | "$CurrentDedicated" => {
            NameKind::Pool(PoolScalar::CurrentDedicated)
        }
        "$CurrentLowPriorityNodes" => NameKind::Pool(PoolScalar::CurrentLowPriority),
        "$TaskSlotsPerNode" => NameKind::Pool(PoolScalar::TaskSlotsPerNode),
        "$TargetDedicatedNodes" => NameKind::Target {
            target: Target::Dedicated,
            alias: false,
        },
        "$TargetDedicated" => NameKind::Target {
            target: Target::Dedicated,
            alias: true,
        },
        "$TargetLowPriorityNodes" => NameKind::Target {
            target: Target::LowPriority,
            alias: false,
        },
        "$TargetLowPriority" => NameKind::Target {
            target: Target::LowPriority,
            alias: true,
        },
        "$NodeDeallocationOption" => NameKind::Deallocation,
        "TimeInterval_Zero" => NameKind::Interval(0),
        "TimeInterval_100ns" => NameKind::Interval(1),
        "TimeInterval_Microsecond" => NameKind::Interval(10),
        "TimeInterval_Millisecond" => NameKind::Interval(10_000),
        "TimeInterval_Second" => NameKind::Interval(second),
        "TimeInterval_Minute" => NameKind::Interval(60 * second),
        "TimeInterval_Hour" => NameKind::Interval(3_600 * second),
        "TimeInterval_Day" => NameKind::Interval(86_400 * second),
        "TimeInterval_Week" => NameKind::Interval(7 * 86_400 * second),
        // Spec §4: a year is 365 days (undocumented; chosen).
        "TimeInterval_Year" => NameKind::Interval(365 * 86_400 * second),
        _ => {
            if let Some(option) = NodeDeallocationOption::from_keyword(name) {
                NameKind::Keyword(option)
            } else if let Some(function) = Function::from_name(name) {
                NameKind::Function(function)
            } else {
                NameKind::User
            }
        }
    }
}

/// Built-in functions (spec §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Avg,
    Len,
    Lg,
    Ln,
    Log,
    Max,
    Min,
    Norm,
    Percentile,
    Rand,
    Range,
    Std,
    Stop,
    Sum,
    Time,
    Val,
    Ceil,
    Floor,
    Round,
}

/// How many arguments a function or method takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arity {
    pub(crate) min: usize,
    pub(crate) max: Option<usize>,
    pub(crate) words: &'static str,
}

impl Arity {
    const fn exactly(n: usize, words: &'static str) -> Self {
        Arity {
            min: n,
            max: Some(n),
            words,
        }
    }

    pub(crate) fn accepts(self, n: usize) -> bool {
        match self.max {
            Some(max) => n >= self.min && n <= max,
            None => n >= self.min,
        }
    }
}

impl Function {
    const ALL: &'static [Function] = &[
        Function::Avg,
        Function::Len,
        Function::Lg,
        Function::Ln,
        Function::Log,
        Function::Max,
        Function::Min,
        Function::Norm,
        Function::Percentile,
        Function::Rand,
        Function::Range,
        Function::Std,
        Function::Stop,
        Function::Sum,
        Function::Time,
        Function::Val,
        Function::Ceil,
        Function::Floor,
        Function::Round,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Function::Avg => "avg",
            Function::Len => "len",
            Function::Lg => "lg",
            Function::Ln => "ln",
            Function::Log => "log",
            Function::Max => "max",
            Function::Min => "min",
            Function::Norm => "norm",
            Function::Percentile => "percentile",
            Function::Rand => "rand",
            Function::Range => "range",
            Function::Std => "std",
            Function::Stop => "stop",
            Function::Sum => "sum",
            Function::Time => "time",
            Function::Val => "val",
            Function::Ceil => "ceil",
            Function::Floor => "floor",
            Function::Round => "round",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Function> {
        Function::ALL.iter().copied().find(|f| f.name() == name)
    }

    pub(crate) fn arity(self) -> Arity {
        match self {
            // doubleVecList functions: the list may be empty (the documented grammar makes
            // it optional); an empty list is a runtime error where the result is undefined.
            Function::Avg
            | Function::Len
            | Function::Max
            | Function::Min
            | Function::Norm
            | Function::Range
            | Function::Std
            | Function::Sum => Arity {
                min: 0,
                max: None,
                words: "any number of",
            },
            Function::Lg
            | Function::Ln
            | Function::Log
            | Function::Ceil
            | Function::Floor
            | Function::Round => Arity {
                min: 1,
                max: None,
                words: "one or more",
            },
            Function::Percentile | Function::Val => Arity::exactly(2, "2"),
            Function::Rand | Function::Stop => Arity::exactly(0, "no"),
            Function::Time => Arity {
                min: 0,
                max: Some(1),
                words: "0 or 1",
            },
        }
    }
}

/// Methods of sampled variables (spec §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    GetSample,
    GetSamplePercent,
    GetSamplePeriod,
    Count,
    HistoryBeginTime,
}

impl Method {
    pub(crate) fn from_name(name: &str) -> Option<Method> {
        match name {
            "GetSample" => Some(Method::GetSample),
            "GetSamplePercent" => Some(Method::GetSamplePercent),
            "GetSamplePeriod" => Some(Method::GetSamplePeriod),
            "Count" => Some(Method::Count),
            "HistoryBeginTime" => Some(Method::HistoryBeginTime),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::GetSample => "GetSample",
            Method::GetSamplePercent => "GetSamplePercent",
            Method::GetSamplePeriod => "GetSamplePeriod",
            Method::Count => "Count",
            Method::HistoryBeginTime => "HistoryBeginTime",
        }
    }

    pub(crate) fn arity(self) -> Arity {
        match self {
            Method::GetSample => Arity {
                min: 1,
                max: Some(3),
                words: "1 to 3",
            },
            Method::GetSamplePercent => Arity {
                min: 1,
                max: Some(2),
                words: "1 or 2",
            },
            Method::GetSamplePeriod | Method::Count | Method::HistoryBeginTime => {
                Arity::exactly(0, "no")
            }
        }
    }
}

/// Members of a timestamp (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    Year,
    Month,
    Day,
    Weekday,
    Hour,
    Minute,
    Second,
}

impl Member {
    pub(crate) fn from_name(name: &str) -> Option<Member> {
        match name {
            "year" => Some(Member::Year),
            "month" => Some(Member::Month),
            "day" => Some(Member::Day),
            "weekday" => Some(Member::Weekday),
            "hour" => Some(Member::Hour),
            "minute" => Some(Member::Minute),
            "second" => Some(Member::Second),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Member::Year => "year",
            Member::Month => "month",
            Member::Day => "day",
            Member::Weekday => "weekday",
            Member::Hour => "hour",
            Member::Minute => "minute",
            Member::Second => "second",
        }
    }
}
