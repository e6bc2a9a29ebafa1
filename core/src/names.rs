//! Names of enum values as tables, reports and flags spell them.

/// An enum written as a lowercase name: [`Named::ALL`] lists the variants, [`Named::name`] gives
/// each one's name, [`Named::from_name`] reads it back.
pub trait Named: Copy + 'static {
    /// Every variant.
    const ALL: &'static [Self];
    /// The name written in tables and reports.
    fn name(self) -> &'static str;
    /// The variant called `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}
