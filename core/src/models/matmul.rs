//! How the CPU evaluators of transformers and CNNs compute their f32 matrix products (`--matmul`).
//!
//! The precision is an evaluator's setting ([`crate::Evaluator::set_matmul`]) that the evaluator
//! puts in force, for its own thread, around each pass ([`scoped`]); the products read it there
//! ([`current`]). A thread-local rather than a process-wide switch, so that evaluators of different
//! settings (two analyses, or tests running side by side) never see each other's.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

/// The arithmetic of the matrix products.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// f32 products (the reference; PyTorch's CPU default).
    #[default]
    F32,
    /// Each f32 operand split into two bf16 parts, three bf16 products accumulated in f32 on Intel
    /// AMX tiles (`crate::models::transformer::bf16x3`): about 4e-6 relative error instead of f32's
    /// 1e-7, about twice as fast. Where the processor has no AMX bf16 tiles the products stay f32.
    Bf16x3,
}

impl MatmulPrecision {
    /// The flag's spelling of each precision.
    pub const NAMES: [&str; 2] = ["f32", "bf16x3"];

    /// The precision of this name (`f32`, `bf16x3`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            "bf16x3" => Some(Self::Bf16x3),
            _ => None,
        }
    }

    /// The name of this precision.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16x3 => "bf16x3",
        }
    }

    /// What this machine computes when asked for `self`: bf16x3 only where AMX bf16 tiles exist.
    pub fn effective(self) -> Self {
        match self {
            Self::Bf16x3 if bf16x3_available() => Self::Bf16x3,
            _ => Self::F32,
        }
    }

    /// A note when this machine cannot compute `self` (the products then stay f32).
    pub fn unavailable_note(self) -> Option<String> {
        (self.effective() != self).then(|| {
            format!(
                "--matmul {} needs Intel AMX bf16 tiles (Sapphire Rapids or later, Linux), which this machine \
                 lacks: the products are f32",
                self.name()
            )
        })
    }
}

/// Whether this process can run bf16x3 products.
pub fn bf16x3_available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        crate::models::transformer::bf16x3::available()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

thread_local! {
    static CURRENT: Cell<MatmulPrecision> = const { Cell::new(MatmulPrecision::F32) };
}

/// The precision in force on this thread (f32 outside any [`scoped`] call).
pub(crate) fn current() -> MatmulPrecision {
    CURRENT.get()
}

/// Runs `work` with `precision` (made [`MatmulPrecision::effective`]) in force on this thread,
/// then restores the previous one, also when `work` panics.
pub(crate) fn scoped<R>(precision: MatmulPrecision, work: impl FnOnce() -> R) -> R {
    struct Restore(MatmulPrecision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(precision.effective()));
    work()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_scope_is_restored() {
        for name in MatmulPrecision::NAMES {
            assert_eq!(MatmulPrecision::parse(name).unwrap().name(), name);
        }
        assert_eq!(MatmulPrecision::parse("bf16"), None);
        assert_eq!(current(), MatmulPrecision::F32);
        let inside = scoped(MatmulPrecision::Bf16x3, current);
        assert_eq!(inside, MatmulPrecision::Bf16x3.effective());
        assert_eq!(current(), MatmulPrecision::F32);
        let _ = std::panic::catch_unwind(|| scoped(MatmulPrecision::Bf16x3, || panic!("inside")));
        assert_eq!(current(), MatmulPrecision::F32);
        assert_eq!(
            MatmulPrecision::Bf16x3.unavailable_note().is_some(),
            !bf16x3_available()
        );
    }
}
