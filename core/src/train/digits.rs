//! The built-in UCI optical digits (Alpaydin & Kaynak 1998, CC BY 4.0; the 8x8 version shipped by
//! scikit-learn), embedded in the library so training works offline and from any folder.

use std::io::Read;

use super::data::Dataset;
use super::error::TrainError;

/// `digits.csv.gz`: 1,797 lines of 64 integer pixels in 0..=16, then the label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/digits.csv.gz"));

/// Number of examples in the data set.
pub const EXAMPLES: usize = 1797;
/// The last this-many examples are the eval set; the first 1,297 are for training.
pub const EVAL_EXAMPLES: usize = 500;
/// Pixels per image.
pub const PIXELS: usize = 64;

/// All 1,797 digits, pixels divided by 16.
pub fn all() -> Result<Dataset, TrainError> {
    let bad = |reason: String| TrainError::Data {
        name: "digits.csv.gz".into(),
        reason,
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot decompress: {e}")))?;
    let mut inputs = Vec::with_capacity(EXAMPLES * PIXELS);
    let mut labels = Vec::with_capacity(EXAMPLES);
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let values: Vec<u32> = line
            .split(',')
            .map(|v| v.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("line {}: {e}", line_no + 1)))?;
        if values.len() != PIXELS + 1 || values[..PIXELS].iter().any(|&p| p > 16) || values[PIXELS] > 9 {
            return Err(bad(format!(
                "line {}: expected 64 pixels in 0..=16 and a label in 0..=9",
                line_no + 1
            )));
        }
        inputs.extend(values[..PIXELS].iter().map(|&p| p as f32 / 16.0));
        labels.push(values[PIXELS]);
    }
    if labels.len() != EXAMPLES {
        return Err(bad(format!("{} examples, expected {EXAMPLES}", labels.len())));
    }
    Ok(Dataset {
        inputs,
        labels,
        dim: PIXELS,
        classes: 10,
    })
}

/// (train, eval): the first 1,297 digits and the last 500.
pub fn train_eval() -> Result<(Dataset, Dataset), TrainError> {
    let all = all()?;
    let cut = EXAMPLES - EVAL_EXAMPLES;
    let train: Vec<usize> = (0..cut).collect();
    let eval: Vec<usize> = (cut..EXAMPLES).collect();
    Ok((all.select(&train), all.select(&eval)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_decode_and_split() {
        let (train, eval) = train_eval().unwrap();
        assert_eq!((train.len(), eval.len()), (1297, 500));
        assert_eq!(train.inputs.len(), 1297 * 64);
        assert!(train.inputs.iter().all(|p| (0.0..=1.0).contains(p)));
        // The first digit of the file is a 0 whose third pixel is 5/16.
        assert_eq!(train.labels[0], 0);
        assert_eq!(train.inputs[2], 5.0 / 16.0);
        let mut counts = [0usize; 10];
        for &l in &train.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 100));
    }
}
