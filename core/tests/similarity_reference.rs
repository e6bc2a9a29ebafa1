//! The similarity measures against NumPy reference values (`fixtures/similarity/make_reference.py`).

use lineage_core::methods::similarity::{debiased_cka, linear_cka, mutual_knn};
use nalgebra::DMatrix;
use serde_json::Value;

fn matrix(value: &Value) -> DMatrix<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(value.clone()).unwrap();
    DMatrix::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j])
}

#[test]
fn similarity_matches_numpy() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/similarity/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (matrix(&case["x"]), matrix(&case["y"]));
        assert_eq!((x.nrows(), x.ncols(), y.ncols()), (40, 8, 6));
        let k = case["k"].as_u64().unwrap() as usize;
        let expect = |key: &str| case[key].as_f64().unwrap();
        let got = [
            ("linear_cka", linear_cka(&x, &y).unwrap()),
            ("debiased_cka", debiased_cka(&x, &y).unwrap()),
            ("mutual_knn", mutual_knn(&x, &y, k).unwrap()),
        ];
        for (key, value) in got {
            assert!(
                (value - expect(key)).abs() < 1e-9,
                "{name} {key}: {value} vs numpy {}",
                expect(key)
            );
        }
        // Symmetric in its arguments.
        assert!((linear_cka(&y, &x).unwrap() - expect("linear_cka")).abs() < 1e-9);
        assert!((debiased_cka(&y, &x).unwrap() - expect("debiased_cka")).abs() < 1e-9);
    }
}
