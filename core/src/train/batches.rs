//! The minibatch order of a run: epochs of a seeded shuffle, incomplete last batches dropped.

use super::rng::Rng;

/// An endless sequence of minibatches (example indices) determined by the data seed.
#[derive(Debug, Clone)]
pub struct BatchStream {
    rng: Rng,
    order: Vec<usize>,
    pos: usize,
}

impl BatchStream {
    /// Batches over `n` examples in the order of `data_seed`.
    pub fn new(n: usize, data_seed: u64) -> Self {
        let mut rng = Rng::new(data_seed, "data");
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        Self { rng, order, pos: 0 }
    }

    /// The next `size` indices; a new epoch (reshuffle) starts when fewer than `size` are left.
    /// `size` must not exceed the number of examples.
    pub fn next_batch(&mut self, size: usize) -> &[usize] {
        assert!(
            size <= self.order.len(),
            "batch of {size} from {} examples",
            self.order.len()
        );
        if self.pos + size > self.order.len() {
            self.rng.shuffle(&mut self.order);
            self.pos = 0;
        }
        self.pos += size;
        &self.order[self.pos - size..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_visits_each_example_once() {
        let mut s = BatchStream::new(10, 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|_| s.next_batch(3).to_vec()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        let again = BatchStream::new(10, 3).next_batch(3).to_vec();
        let other = BatchStream::new(10, 4).next_batch(3).to_vec();
        assert_eq!(BatchStream::new(10, 3).next_batch(3), again.as_slice());
        assert_ne!(again, other);
    }
}
