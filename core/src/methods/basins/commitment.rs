//! Commitment: the step after which a run stays connected to its own final checkpoint.

/// The commitment step of one run.
///
/// `rows` are `(step, barrier between the run's checkpoint at step and its final checkpoint)` in any
/// order; `final_step` is the step of that final checkpoint. Rows at or after `final_step` are ignored
/// (the final checkpoint is trivially connected to itself). Returns the earliest row step `s` such that
/// every row with `s <= step < final_step` has barrier < `eps` (strict), or `None` when the last
/// checkpoint before the final one is not connected, or there is none. A NaN barrier counts as not
/// connected; several rows at one step must all be connected.
pub fn commitment_step(rows: &[(u64, f64)], final_step: u64, eps: f64) -> Option<u64> {
    let mut before: Vec<(u64, f64)> = rows.iter().copied().filter(|&(s, _)| s < final_step).collect();
    before.sort_by_key(|&(s, _)| s);
    let mut answer = None;
    let mut end = before.len();
    while end > 0 {
        let step = before[end - 1].0;
        let start = before[..end].iter().rposition(|&(s, _)| s != step).map_or(0, |p| p + 1);
        if !before[start..end].iter().all(|&(_, b)| b < eps) {
            break;
        }
        answer = Some(step);
        end = start;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_of_the_connected_suffix() {
        let rows = [
            (0, 2.0),
            (100, 0.5),
            (200, 0.01),
            (300, 0.3),
            (400, 0.02),
            (500, 0.01),
            (600, 0.0),
        ];
        assert_eq!(commitment_step(&rows, 600, 0.1), Some(400));
        // The final checkpoint's own row is optional and ignored.
        assert_eq!(commitment_step(&rows[..6], 600, 0.1), Some(400));
        // Order of rows does not matter.
        let mut shuffled = rows.to_vec();
        shuffled.reverse();
        assert_eq!(commitment_step(&shuffled, 600, 0.1), Some(400));
    }

    #[test]
    fn none_when_not_connected_before_the_end() {
        assert_eq!(commitment_step(&[(0, 0.01), (100, 0.5), (200, 0.0)], 200, 0.1), None);
        assert_eq!(commitment_step(&[(200, 0.0)], 200, 0.1), None);
        assert_eq!(commitment_step(&[], 200, 0.1), None);
        assert_eq!(commitment_step(&[(0, 0.01), (100, f64::NAN)], 200, 0.1), None);
    }

    #[test]
    fn connected_from_the_start_and_strict_threshold() {
        assert_eq!(commitment_step(&[(0, 0.01), (100, 0.02)], 200, 0.1), Some(0));
        assert_eq!(commitment_step(&[(0, 0.01), (100, 0.1)], 200, 0.1), None);
    }

    #[test]
    fn duplicate_rows_at_a_step_must_all_be_connected() {
        assert_eq!(
            commitment_step(&[(0, 0.01), (100, 0.01), (100, 0.5), (150, 0.0)], 200, 0.1),
            Some(150)
        );
    }
}
