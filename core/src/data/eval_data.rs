//! Eval data: the held-out examples every checkpoint is evaluated on.
//!
//! Read from `.safetensors` / `.npz` (arrays `inputs` or `input_ids`, `labels`, optional
//! `attention_mask` and `token_type_ids`) or `.parquet` (list column `inputs` (numbers) or
//! `input_ids` (integers), integer column `labels`, optional list columns `attention_mask` and
//! `token_type_ids`). The three formats give identical data. Parquet token lists may differ in
//! length from row to row, as a tokenizer without padding writes them: shorter rows are padded on
//! the right (ids and segment ids 0, attention mask 0, per-token labels -100), and when the file
//! has no `attention_mask` one is made from the rows' lengths.
//! Token ids without `labels` are language-model data: the targets are the next tokens. Token ids
//! with `labels` of their own shape (a list column in Parquet) are language-model data with
//! per-token targets in Hugging Face's convention: `labels[t]` is the token position t - 1
//! predicts, -100 where no prediction is scored (e.g. a prompt, padding).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use polars::prelude::{DataFrame, DataType, Series};

use crate::error::{CoreError, Result};
use crate::output::schema;

/// Name of the feature array / column (numbers, upcast to f32).
pub const INPUTS: &str = "inputs";
/// Name of the token id array / column (integers, kept as u32).
pub const INPUT_IDS: &str = "input_ids";
/// Name of the label array / column (integers >= 0).
pub const LABELS: &str = "labels";
/// Other names of the labels, used when there is no `labels`, as Hugging Face's data collators
/// accept them: `datasets`' classification splits (GLUE, IMDB) name their column `label`.
pub const LABEL_ALIASES: [&str; 2] = ["label", "label_ids"];
/// Name of the optional attention mask array / column (same shape as the token ids).
pub const ATTENTION_MASK: &str = "attention_mask";
/// Name of the optional segment ids array / column (BERT sentence pairs; same shape as the ids).
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";

/// Held-out examples: inputs, integer class labels and an optional attention mask.
#[derive(Debug, Clone)]
pub struct EvalData {
    /// `[N, D]` on the CPU: f32 features (from `inputs`, any numeric dtype, trailing dimensions
    /// flattened), or u32 token ids (from `input_ids`).
    pub inputs: Tensor,
    /// `N` class labels; empty for language-model data (token ids without labels, see
    /// [`EvalData::has_labels`]).
    pub labels: Vec<u32>,
    /// The shape of one example as stored, before flattening: `[C, H, W]` for images
    /// `[N, C, H, W]`, `[D]` for rows of features or tokens.
    pub example_shape: Vec<usize>,
    /// Optional `[N, D]` u32 mask (1 = attend, 0 = padding), same shape as `inputs`.
    pub attention_mask: Option<Tensor>,
    /// Optional `[N, D]` u32 segment ids (0 = first sentence, 1 = second), same shape as `inputs`.
    pub token_type_ids: Option<Tensor>,
    /// Optional `[N, D]` i64 per-token targets of language-model data ([`IGNORE_INDEX`] = not
    /// scored), same shape as `inputs`; `labels` is then empty.
    pub token_labels: Option<Tensor>,
    /// The file the data was read from (`<memory>` for data built in memory), for messages.
    pub source: PathBuf,
}

/// The per-token label of positions that are not scored (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

impl EvalData {
    /// Reads eval data from a `.safetensors`, `.npz` or `.parquet` file (chosen by extension).
    pub fn load(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("safetensors") => Self::from_arrays(path, read_safetensors(path)?),
            Some("npz") => Self::from_arrays(path, read_npz(path)?),
            Some("parquet") => Self::from_arrays(path, read_parquet(path)?),
            _ => Err(CoreError::data(
                path,
                "unsupported file type (expected .safetensors, .npz or .parquet)",
            )),
        }
    }

    /// Builds eval data from tensors held in memory; checks it like a file (`<memory>` in errors).
    /// `inputs` may be numeric features (upcast to f32) or, if its dtype is an integer type and
    /// `token_ids` is true, token ids (with no `labels`: language-model data).
    pub fn from_tensors(
        inputs: Tensor,
        labels: Vec<u32>,
        attention_mask: Option<Tensor>,
        token_ids: bool,
    ) -> Result<Self> {
        let path = Path::new("<memory>");
        let mut arrays = HashMap::new();
        arrays.insert(if token_ids { INPUT_IDS } else { INPUTS }.to_string(), inputs);
        // Token ids without labels are language-model data.
        if !(token_ids && labels.is_empty()) {
            let labels = Tensor::from_vec(labels.clone(), labels.len(), &Device::Cpu)
                .map_err(|e| CoreError::data(path, format!("labels: {e}")))?;
            arrays.insert(LABELS.to_string(), labels);
        }
        if let Some(mask) = attention_mask {
            arrays.insert(ATTENTION_MASK.to_string(), mask);
        }
        Self::from_arrays(path, arrays)
    }

    /// Number of examples (rows) `N`.
    pub fn len(&self) -> usize {
        self.inputs.dims().first().copied().unwrap_or(0)
    }

    /// True when there is no example (never the case for loaded data).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// False for language-model data: token ids without class labels.
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Width `D` of one example (features or tokens).
    pub fn width(&self) -> usize {
        self.inputs.dims().get(1).copied().unwrap_or(0)
    }

    /// True when `inputs` holds u32 token ids rather than f32 features.
    pub fn is_token_ids(&self) -> bool {
        self.inputs.dtype() == DType::U32
    }

    /// Largest label + 1 (the fewest classes a model must predict).
    pub fn min_classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m as usize + 1)
    }

    /// Validates and normalises named arrays read from `path`.
    fn from_arrays(path: &Path, mut arrays: HashMap<String, Tensor>) -> Result<Self> {
        let example_shape = arrays
            .get(INPUTS)
            .or(arrays.get(INPUT_IDS))
            .map_or(Vec::new(), |x| match x.dims() {
                [_] => vec![1],
                [_, rest @ ..] => rest.to_vec(),
                [] => Vec::new(),
            });
        let inputs = match (arrays.remove(INPUTS), arrays.remove(INPUT_IDS)) {
            (Some(_), Some(_)) => {
                return Err(CoreError::data(path, "both `inputs` and `input_ids` present; keep one"));
            }
            (Some(x), None) => features(path, x)?,
            (None, Some(ids)) => token_ids(path, INPUT_IDS, ids)?,
            (None, None) => {
                return Err(CoreError::data(
                    path,
                    format!("missing `inputs` (or `input_ids`); found {}", names(&arrays)),
                ));
            }
        };
        let n = inputs.dims()[0];
        let mut token_labels = None;
        let labels = arrays
            .remove(LABELS)
            .or_else(|| LABEL_ALIASES.iter().find_map(|name| arrays.remove(*name)));
        let labels = match labels {
            // Per-token targets: language-model data in Hugging Face's convention.
            Some(labels) if inputs.dtype() == DType::U32 && labels.rank() == 2 && labels.dims()[1] > 1 => {
                token_labels = Some(per_token_labels(path, labels, &inputs)?);
                Vec::new()
            }
            Some(labels) => labels_of(path, labels)?,
            // Language-model data: the next tokens are the targets.
            None if inputs.dtype() == DType::U32 => Vec::new(),
            None => {
                return Err(CoreError::data(
                    path,
                    format!("missing `labels`; found {}", names(&arrays)),
                ));
            }
        };
        if !labels.is_empty() && labels.len() != n {
            return Err(CoreError::data(
                path,
                format!("length mismatch: {n} inputs but {} labels", labels.len()),
            ));
        }
        if n == 0 {
            return Err(CoreError::data(path, "no examples"));
        }
        let mut aligned = |name: &str| -> Result<Option<Tensor>> {
            let Some(values) = arrays.remove(name) else {
                return Ok(None);
            };
            let values = token_ids(path, name, values)?;
            if values.dims() != inputs.dims() {
                return Err(CoreError::data(
                    path,
                    format!(
                        "length mismatch: `{name}` has shape {:?}, inputs {:?}",
                        values.dims(),
                        inputs.dims()
                    ),
                ));
            }
            Ok(Some(values))
        };
        let attention_mask = aligned(ATTENTION_MASK)?;
        let token_type_ids = aligned(TOKEN_TYPE_IDS)?;
        Ok(Self {
            inputs,
            labels,
            example_shape,
            attention_mask,
            token_type_ids,
            token_labels,
            source: path.to_path_buf(),
        })
    }

    /// The first `n` examples (all of them when there are fewer): inputs, labels, masks and
    /// per-token targets cut alike.
    pub fn first(self, n: usize) -> Result<Self> {
        if n >= self.len() {
            return Ok(self);
        }
        let source = self.source.clone();
        let cut = |t: Tensor| {
            t.narrow(0, 0, n)
                .map_err(|e| CoreError::data(&source, format!("first {n} examples: {e}")))
        };
        let cut_optional = |t: Option<Tensor>| t.map(cut).transpose();
        let mut labels = self.labels;
        labels.truncate(n);
        Ok(Self {
            inputs: cut(self.inputs)?,
            labels,
            example_shape: self.example_shape,
            attention_mask: cut_optional(self.attention_mask)?,
            token_type_ids: cut_optional(self.token_type_ids)?,
            token_labels: cut_optional(self.token_labels)?,
            source: self.source,
        })
    }

    /// Adds segment ids (`[N, D]` integers, the shape of the token ids).
    pub fn with_token_type_ids(self, token_type_ids: Tensor) -> Result<Self> {
        let path = Path::new("<memory>");
        let dims = token_type_ids.dims().to_vec();
        let token_type_ids = token_ids(path, TOKEN_TYPE_IDS, token_type_ids)?;
        if token_type_ids.dims() != self.inputs.dims() {
            return Err(CoreError::data(
                path,
                format!(
                    "length mismatch: `{TOKEN_TYPE_IDS}` has shape {dims:?}, inputs {:?}",
                    self.inputs.dims()
                ),
            ));
        }
        Ok(Self {
            token_type_ids: Some(token_type_ids),
            ..self
        })
    }
}

/// Sorted names of the arrays, for error messages.
fn names(arrays: &HashMap<String, Tensor>) -> String {
    let mut names: Vec<&str> = arrays.keys().map(String::as_str).collect();
    names.sort_unstable();
    if names.is_empty() {
        "nothing".into()
    } else {
        format!("`{}`", names.join("`, `"))
    }
}

/// `[N, ...]` numbers -> `[N, D]` finite f32.
fn features(path: &Path, x: Tensor) -> Result<Tensor> {
    let what = |e: candle_core::Error| CoreError::data(path, format!("`inputs`: {e}"));
    let x = as_matrix(path, INPUTS, x)?;
    let x = x.to_dtype(DType::F32).and_then(|x| x.contiguous()).map_err(what)?;
    let values = x.flatten_all().and_then(|v| v.to_vec1::<f32>()).map_err(what)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let d = x.dims()[1].max(1);
        return Err(CoreError::data(
            path,
            format!("`inputs` has a non-finite value ({}) in example {}", values[i], i / d),
        ));
    }
    Ok(x)
}

/// `[N, ...]` integers (or booleans) -> `[N, D]` u32.
fn token_ids(path: &Path, name: &str, x: Tensor) -> Result<Tensor> {
    let x = as_matrix(path, name, x)?;
    let dims = x.dims().to_vec();
    if dims[0] > 0 && dims[1] == 0 {
        return Err(CoreError::data(
            path,
            format!("`{name}` holds no tokens (every sequence is empty)"),
        ));
    }
    let values = integers(path, name, &x)?;
    let ids = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u32::try_from(v).map_err(|_| {
                CoreError::data(
                    path,
                    format!("`{name}` value {v} in example {} is out of range", i / dims[1].max(1)),
                )
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    Tensor::from_vec(ids, dims, &Device::Cpu).map_err(|e| CoreError::data(path, format!("`{name}`: {e}")))
}

/// Reshapes `[N]` to `[N, 1]` and `[N, a, b, ...]` to `[N, a*b*...]`; rejects scalars.
fn as_matrix(path: &Path, name: &str, x: Tensor) -> Result<Tensor> {
    let what = |e: candle_core::Error| CoreError::data(path, format!("`{name}`: {e}"));
    match x.rank() {
        0 => Err(CoreError::data(path, format!("`{name}` is a scalar, expected [N, D]"))),
        1 => {
            let n = x.dims()[0];
            x.reshape((n, 1)).map_err(what)
        }
        2 => Ok(x),
        _ => x.flatten_from(1).map_err(what),
    }
}

/// Per-token labels: `[N, D]` integers, each `>= 0` or [`IGNORE_INDEX`], the shape of `inputs`.
fn per_token_labels(path: &Path, labels: Tensor, inputs: &Tensor) -> Result<Tensor> {
    if labels.dims() != inputs.dims() {
        return Err(CoreError::data(
            path,
            format!(
                "length mismatch: per-token `labels` have shape {:?}, inputs {:?}",
                labels.dims(),
                inputs.dims()
            ),
        ));
    }
    let values = integers(path, LABELS, &labels)?;
    let width = inputs.dims()[1].max(1);
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v < 0 && **v != IGNORE_INDEX) {
        return Err(CoreError::data(
            path,
            format!(
                "label {v} in example {} is out of range (per-token labels are >= 0 or {IGNORE_INDEX})",
                i / width
            ),
        ));
    }
    Tensor::from_vec(values, labels.dims(), &Device::Cpu).map_err(|e| CoreError::data(path, format!("`{LABELS}`: {e}")))
}

/// Labels: `[N]` (or `[N, 1]`) integers in `0..=u32::MAX`.
fn labels_of(path: &Path, labels: Tensor) -> Result<Vec<u32>> {
    let rank_ok = labels.rank() == 1 || (labels.rank() == 2 && labels.dims()[1] == 1);
    if !rank_ok {
        return Err(CoreError::data(
            path,
            format!("`labels` has shape {:?}, expected [N]", labels.dims()),
        ));
    }
    let values = integers(path, LABELS, &labels)?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u32::try_from(v).map_err(|_| {
                CoreError::data(
                    path,
                    format!("label {v} of example {i} is out of range (labels must be >= 0)"),
                )
            })
        })
        .collect()
}

/// All values of an integer (or boolean/u8) tensor, as i64; floating-point dtypes are rejected.
fn integers(path: &Path, name: &str, x: &Tensor) -> Result<Vec<i64>> {
    let what = |e: candle_core::Error| CoreError::data(path, format!("`{name}`: {e}"));
    let flat = x.flatten_all().map_err(what)?;
    let values: Vec<i64> = match x.dtype() {
        DType::U8 => flat.to_vec1::<u8>().map_err(what)?.into_iter().map(i64::from).collect(),
        DType::U32 => flat
            .to_vec1::<u32>()
            .map_err(what)?
            .into_iter()
            .map(i64::from)
            .collect(),
        DType::I16 => flat
            .to_vec1::<i16>()
            .map_err(what)?
            .into_iter()
            .map(i64::from)
            .collect(),
        DType::I32 => flat
            .to_vec1::<i32>()
            .map_err(what)?
            .into_iter()
            .map(i64::from)
            .collect(),
        DType::I64 => flat.to_vec1::<i64>().map_err(what)?,
        other => {
            return Err(CoreError::data(
                path,
                format!("`{name}` has dtype {other:?}, expected an integer type"),
            ));
        }
    };
    Ok(values)
}

/// All arrays of a safetensors file.
fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| read_error(path, e))
}

/// All arrays of an npz archive (names without `.npy`).
fn read_npz(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(Tensor::read_npz(path)
        .map_err(|e| read_error(path, e))?
        .into_iter()
        .collect())
}

/// A candle read error: I/O errors keep their kind, the rest is a data problem.
fn read_error(path: &Path, e: candle_core::Error) -> CoreError {
    match e {
        candle_core::Error::Io(io) => CoreError::io(path, io),
        other => CoreError::data(path, format!("unreadable: {other}")),
    }
}

/// The `inputs`/`input_ids`, `labels`, `attention_mask` and `token_type_ids` columns of a Parquet
/// file, as arrays.
fn read_parquet(path: &Path) -> Result<HashMap<String, Tensor>> {
    let (df, found) = read_parquet_columns(path)?;
    let mut arrays = HashMap::new();
    if let Some(series) = column(&df, INPUTS) {
        arrays.insert(
            INPUTS.to_string(),
            list_column(path, INPUTS, series, Element::Feature)?.values,
        );
    }
    // Rows of token ids may differ in length; the columns that go with them must follow them.
    let mut ids_lengths = None;
    if let Some(series) = column(&df, INPUT_IDS) {
        let ids = list_column(path, INPUT_IDS, series, Element::Token { pad: 0 })?;
        if let Some(row) = ids.lengths.iter().position(|&len| len == 0) {
            return Err(CoreError::data(
                path,
                format!("column `{INPUT_IDS}`: row {row} has no tokens"),
            ));
        }
        arrays.insert(INPUT_IDS.to_string(), ids.values);
        ids_lengths = Some(ids.lengths);
    }
    let token_column = |name: &str, series: &Series, pad: i64| -> Result<Tensor> {
        let lists = list_column(path, name, series, Element::Token { pad })?;
        if let Some(lengths) = &ids_lengths
            && let Some(row) = lengths.iter().zip(&lists.lengths).position(|(ids, own)| ids != own)
        {
            return Err(CoreError::data(
                path,
                format!(
                    "column `{name}`: row {row} has {} values, `{INPUT_IDS}` {}",
                    lists.lengths[row], lengths[row]
                ),
            ));
        }
        Ok(lists.values)
    };
    for name in [ATTENTION_MASK, TOKEN_TYPE_IDS] {
        if let Some(series) = column(&df, name) {
            let values = token_column(name, series, 0)?;
            arrays.insert(name.to_string(), values);
        }
    }
    let labels = std::iter::once(LABELS)
        .chain(LABEL_ALIASES)
        .find_map(|name| column(&df, name).map(|series| (name, series)));
    if let Some((name, series)) = labels {
        let labels = match series.dtype() {
            // Per-token targets of language-model data.
            DataType::List(_) => token_column(name, series, IGNORE_INDEX)?,
            _ => int_column(path, name, series)?,
        };
        arrays.insert(LABELS.to_string(), labels);
    }
    if let Some(lengths) = &ids_lengths
        && !arrays.contains_key(ATTENTION_MASK)
        && lengths.iter().any(|&len| len != lengths[0])
    {
        arrays.insert(ATTENTION_MASK.to_string(), mask_of_lengths(path, lengths)?);
    }
    // Token ids without labels are language-model data.
    let no_inputs = !arrays.contains_key(INPUTS) && !arrays.contains_key(INPUT_IDS);
    let no_labels = !arrays.contains_key(INPUT_IDS) && !arrays.contains_key(LABELS);
    if no_inputs || no_labels {
        let found: Vec<String> = found.iter().map(|n| format!("`{n}`")).collect();
        let missing = if no_inputs {
            "`inputs` (or `input_ids`)"
        } else {
            "`labels` (or `label`)"
        };
        return Err(CoreError::data(
            path,
            format!("missing column {missing}; found {}", found.join(", ")),
        ));
    }
    Ok(arrays)
}

/// The columns of the Parquet file `path` that eval data is read from (other columns, e.g. the text
/// or the example ids of a `datasets` export, are not read), and the names of all its columns.
fn read_parquet_columns(path: &Path) -> Result<(DataFrame, Vec<String>)> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let known = [INPUTS, INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS, LABELS];
    schema::read_parquet_columns(file, |name| known.contains(&name) || LABEL_ALIASES.contains(&name))
        .map_err(|problem| CoreError::data(path, format!("unreadable Parquet: {problem}")))
}

/// The column `name` as a series, if present.
fn column<'a>(df: &'a DataFrame, name: &str) -> Option<&'a Series> {
    df.column(name).ok().map(|c| c.as_materialized_series())
}

/// What a list column holds.
#[derive(Clone, Copy)]
enum Element {
    /// Numbers (read as f32), in lists of one length: an example's features.
    Feature,
    /// Integers (read as i64), in lists whose lengths may differ: a sequence's tokens, the shorter
    /// lists padded on the right with `pad`.
    Token { pad: i64 },
}

/// A list column as a matrix, with the length of each row before padding.
struct Lists {
    /// `[N, D]`: f32 features or i64 tokens, `D` the longest row.
    values: Tensor,
    /// Each row's own length.
    lengths: Vec<usize>,
}

/// The `[N, D]` attention mask (i64) of token rows of `lengths`: 1 on each row's tokens, 0 on the
/// padding after them.
fn mask_of_lengths(path: &Path, lengths: &[usize]) -> Result<Tensor> {
    let width = lengths.iter().copied().max().unwrap_or(0);
    let mask: Vec<i64> = lengths
        .iter()
        .flat_map(|&len| (0..width).map(move |t| i64::from(t < len)))
        .collect();
    Tensor::from_vec(mask, (lengths.len(), width), &Device::Cpu)
        .map_err(|e| CoreError::data(path, format!("attention mask: {e}")))
}

/// A list column -> [`Lists`]: features (f32) must have one length; token rows (i64) of different
/// lengths are padded on the right to the longest.
fn list_column(path: &Path, name: &str, series: &Series, element: Element) -> Result<Lists> {
    let float = matches!(element, Element::Feature);
    let err = |problem: String| CoreError::data(path, format!("column `{name}`: {problem}"));
    let DataType::List(inner) = series.dtype() else {
        return Err(err(format!("has type {}, expected a list of numbers", series.dtype())));
    };
    if !(inner.is_primitive_numeric() || inner.is_bool()) || (!float && inner.is_float()) {
        let expected = if float { "numbers" } else { "integers" };
        return Err(err(format!(
            "has type {}, expected a list of {expected}",
            series.dtype()
        )));
    }
    let target = if float { DataType::Float32 } else { DataType::Int64 };
    let cast = series
        .cast(&DataType::List(Box::new(target)))
        .map_err(|e| err(format!("cannot convert: {e}")))?;
    let lists = cast.list().map_err(|e| err(e.to_string()))?;
    let n = lists.len();
    let mut lengths = Vec::with_capacity(n);
    for (row, item) in lists.series_iter().enumerate() {
        let item = item.ok_or_else(|| err(format!("row {row} is null")))?;
        if item.null_count() > 0 {
            return Err(err(format!("row {row} contains nulls")));
        }
        if float && row > 0 && item.len() != lengths[0] {
            return Err(err(format!(
                "row {row} has {} values, row 0 has {}",
                item.len(),
                lengths[0]
            )));
        }
        lengths.push(item.len());
    }
    let width = lengths.iter().copied().max().unwrap_or(0);
    let shape = (n, width);
    let tensor = match element {
        Element::Feature => {
            let mut floats: Vec<f32> = Vec::with_capacity(n * width);
            for item in lists.series_iter().flatten() {
                floats.extend(item.f32().map_err(|e| err(e.to_string()))?.into_no_null_iter());
            }
            Tensor::from_vec(floats, shape, &Device::Cpu)
        }
        Element::Token { pad } => {
            let mut ints: Vec<i64> = Vec::with_capacity(n * width);
            for item in lists.series_iter().flatten() {
                ints.extend(item.i64().map_err(|e| err(e.to_string()))?.into_no_null_iter());
                ints.resize(ints.len() + width - item.len(), pad);
            }
            Tensor::from_vec(ints, shape, &Device::Cpu)
        }
    };
    let values = tensor.map_err(|e| err(e.to_string()))?;
    Ok(Lists { values, lengths })
}

/// The integer labels column `name` -> `[N]` i64 tensor.
fn int_column(path: &Path, name: &str, series: &Series) -> Result<Tensor> {
    let err = |problem: String| CoreError::data(path, format!("column `{name}`: {problem}"));
    if !series.dtype().is_integer() {
        return Err(err(format!("has type {}, expected integers", series.dtype())));
    }
    if series.null_count() > 0 {
        return Err(err(format!("{} null labels", series.null_count())));
    }
    let cast = series.cast(&DataType::Int64).map_err(|e| err(e.to_string()))?;
    let values: Vec<i64> = cast
        .i64()
        .map_err(|e| err(e.to_string()))?
        .into_no_null_iter()
        .collect();
    let n = values.len();
    Tensor::from_vec(values, n, &Device::Cpu).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/digits-mlp")
            .join(name)
    }

    fn write_safetensors(dir: &Path, tensors: Vec<(&str, Tensor)>) -> PathBuf {
        let path = dir.join("data.safetensors");
        let map: HashMap<String, Tensor> = tensors.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }

    #[test]
    fn the_three_fixture_formats_load_identically() {
        let st = EvalData::load(&fixture("digits_eval.safetensors")).unwrap();
        assert_eq!(st.inputs.dims(), &[500, 64]);
        assert_eq!(st.inputs.dtype(), DType::F32);
        assert_eq!(st.len(), 500);
        assert!(st.attention_mask.is_none());
        let x = st.inputs.to_vec2::<f32>().unwrap();
        for other in ["digits_eval.npz", "digits_eval.parquet"] {
            let d = EvalData::load(&fixture(other)).unwrap();
            assert_eq!(d.labels, st.labels, "{other}");
            assert_eq!(d.inputs.dims(), st.inputs.dims(), "{other}");
            assert_eq!(d.inputs.to_vec2::<f32>().unwrap(), x, "{other}");
        }
        assert_eq!(st.min_classes(), 10);
    }

    #[test]
    fn missing_labels_and_length_mismatch_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::zeros((4, 3), DType::F64, &Device::Cpu).unwrap();
        let path = write_safetensors(dir.path(), vec![("inputs", x.clone())]);
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("data.safetensors") && err.contains("missing `labels`"),
            "{err}"
        );

        // Token ids without labels are language-model data.
        let ids = Tensor::new(&[[1u32, 2], [3, 4]], &Device::Cpu).unwrap();
        let path = write_safetensors(dir.path(), vec![("input_ids", ids)]);
        let lm = EvalData::load(&path).unwrap();
        assert!(lm.is_token_ids() && !lm.has_labels());
        assert_eq!(lm.len(), 2);

        let y = Tensor::new(&[0i64, 1, 2], &Device::Cpu).unwrap();
        let path = write_safetensors(dir.path(), vec![("inputs", x.clone()), ("labels", y)]);
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(err.contains("length mismatch: 4 inputs but 3 labels"), "{err}");

        let y = Tensor::new(&[0i64, 1, -1, 2], &Device::Cpu).unwrap();
        let path = write_safetensors(dir.path(), vec![("inputs", x.clone()), ("labels", y)]);
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(err.contains("label -1 of example 2 is out of range"), "{err}");

        let y = Tensor::new(&[0f32, 1., 2., 3.], &Device::Cpu).unwrap();
        let path = write_safetensors(dir.path(), vec![("inputs", x), ("labels", y)]);
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(err.contains("expected an integer type"), "{err}");
    }

    #[test]
    fn integer_inputs_are_upcast_and_images_flattened() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::new(&[[[1u8, 2], [3, 4]], [[5, 6], [7, 8]]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1u8, 0], &Device::Cpu).unwrap();
        let path = write_safetensors(dir.path(), vec![("inputs", x), ("labels", y)]);
        let d = EvalData::load(&path).unwrap();
        assert_eq!(d.inputs.dims(), &[2, 4]);
        assert_eq!(d.example_shape, [2, 2]);
        assert_eq!(d.inputs.to_vec2::<f32>().unwrap()[1], vec![5., 6., 7., 8.]);
        assert_eq!(d.labels, vec![1, 0]);
    }

    #[test]
    fn token_ids_and_attention_mask() {
        let ids = Tensor::new(&[[101i64, 7, 0], [101, 8, 9]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u8, 1, 0], [1, 1, 1]], &Device::Cpu).unwrap();
        let d = EvalData::from_tensors(ids, vec![0, 1], Some(mask), true).unwrap();
        assert!(d.is_token_ids());
        assert_eq!(d.attention_mask.unwrap().to_vec2::<u32>().unwrap()[0], vec![1, 1, 0]);
        let bad = Tensor::new(&[[1u8, 1], [1, 1]], &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[101i64, 7, 0], [101, 8, 9]], &Device::Cpu).unwrap();
        let err = EvalData::from_tensors(ids, vec![0, 1], Some(bad), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("<memory>") && err.contains("attention_mask"), "{err}");

        // Sequences without a single token (Parquet lists that are all empty).
        let empty = Tensor::zeros((2, 0), DType::I64, &Device::Cpu).unwrap();
        let err = EvalData::from_tensors(empty, vec![0, 1], None, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("<memory>") && err.contains("no tokens"), "{err}");

        let ids = Tensor::new(&[[101i64, 7, 0], [101, 8, 9]], &Device::Cpu).unwrap();
        let d = EvalData::from_tensors(ids, vec![0, 1], None, true).unwrap();
        let types = Tensor::new(&[[0u8, 1, 1], [0, 0, 1]], &Device::Cpu).unwrap();
        let d = d.with_token_type_ids(types).unwrap();
        assert_eq!(
            d.token_type_ids.as_ref().unwrap().to_vec2::<u32>().unwrap()[1],
            vec![0, 0, 1]
        );
        let err = d
            .with_token_type_ids(Tensor::new(&[[0u8, 1]], &Device::Cpu).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`token_type_ids` has shape [1, 2]"), "{err}");
    }

    /// A Parquet file of list columns (i64 unless named `inputs`) and optional int `labels`.
    fn write_parquet(dir: &Path, lists: &[(&str, Vec<Vec<i64>>)], labels: Option<Vec<i64>>) -> PathBuf {
        use polars::prelude::{Column, IntoColumn, NamedFrom, ParquetWriter};
        let mut columns: Vec<Column> = lists
            .iter()
            .map(|(name, rows)| {
                let rows: Vec<Series> = rows
                    .iter()
                    .map(|row| match *name {
                        INPUTS => Series::new("".into(), row.iter().map(|&v| v as f32).collect::<Vec<_>>()),
                        _ => Series::new("".into(), row.clone()),
                    })
                    .collect();
                Series::new((*name).into(), rows).into_column()
            })
            .collect();
        if let Some(labels) = labels {
            columns.push(Series::new(LABELS.into(), labels).into_column());
        }
        let path = dir.join("data.parquet");
        let mut df = DataFrame::new_infer_height(columns).unwrap();
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        path
    }

    #[test]
    fn token_rows_of_different_lengths_are_padded_on_the_right() {
        let dir = tempfile::tempdir().unwrap();
        let ids = vec![vec![101, 7, 8], vec![101, 9], vec![101]];
        let matrix = |t: &Option<Tensor>| t.as_ref().unwrap().to_vec2::<u32>().unwrap();

        // No mask in the file: one from the rows' lengths.
        let path = write_parquet(dir.path(), &[(INPUT_IDS, ids.clone())], Some(vec![0, 1, 0]));
        let d = EvalData::load(&path).unwrap();
        assert_eq!(
            d.inputs.to_vec2::<u32>().unwrap(),
            [[101, 7, 8], [101, 9, 0], [101, 0, 0]]
        );
        assert_eq!(matrix(&d.attention_mask), [[1, 1, 1], [1, 1, 0], [1, 0, 0]]);
        assert_eq!(d.labels, [0, 1, 0]);

        // The file's own mask and segment ids, padded alike; per-token labels padded with -100.
        let mask = vec![vec![1, 1, 1], vec![1, 0], vec![1]];
        let types = vec![vec![0, 1, 1], vec![0, 1], vec![0]];
        let targets = vec![vec![-100, 7, 8], vec![-100, 9], vec![-100]];
        let columns = [
            (INPUT_IDS, ids.clone()),
            (ATTENTION_MASK, mask),
            (TOKEN_TYPE_IDS, types),
            (LABELS, targets),
        ];
        let d = EvalData::load(&write_parquet(dir.path(), &columns, None)).unwrap();
        assert_eq!(matrix(&d.attention_mask), [[1, 1, 1], [1, 0, 0], [1, 0, 0]]);
        assert_eq!(matrix(&d.token_type_ids), [[0, 1, 1], [0, 1, 0], [0, 0, 0]]);
        let targets = d.token_labels.unwrap().to_vec2::<i64>().unwrap();
        assert_eq!(targets, [[-100, 7, 8], [-100, 9, -100], [-100, -100, -100]]);

        // Rows that do not go together, an empty sequence, features of different lengths.
        let mask = vec![vec![1, 1, 1], vec![1, 1, 1], vec![1]];
        let path = write_parquet(dir.path(), &[(INPUT_IDS, ids), (ATTENTION_MASK, mask)], None);
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("data.parquet") && err.contains("`attention_mask`: row 1 has 3 values, `input_ids` 2"),
            "{err}"
        );
        let path = write_parquet(dir.path(), &[(INPUT_IDS, vec![vec![101, 7], vec![]])], None);
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(err.contains("`input_ids`: row 1 has no tokens"), "{err}");
        let path = write_parquet(
            dir.path(),
            &[(INPUTS, vec![vec![1, 2, 3], vec![4, 5]])],
            Some(vec![0, 1]),
        );
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(err.contains("`inputs`: row 1 has 2 values, row 0 has 3"), "{err}");
    }

    #[test]
    fn labels_may_be_named_as_in_hugging_face_datasets() {
        use polars::prelude::{IntoColumn, NamedFrom, ParquetWriter};
        let dir = tempfile::tempdir().unwrap();
        let ids = vec![vec![101, 7], vec![101, 8]];
        let mut df = DataFrame::new_infer_height(vec![]).unwrap();
        for name in LABEL_ALIASES {
            // `write_parquet` names the labels `labels`: rename them.
            let path = write_parquet(dir.path(), &[(INPUT_IDS, ids.clone())], Some(vec![1, 0]));
            df = schema::read_parquet(&path).unwrap();
            df.rename(LABELS, name.into()).unwrap();
            ParquetWriter::new(File::create(&path).unwrap())
                .finish(&mut df)
                .unwrap();
            let d = EvalData::load(&path).unwrap();
            assert_eq!(d.labels, [1, 0], "{name}");
            // In a safetensors file too.
            let path = write_safetensors(
                dir.path(),
                vec![
                    ("inputs", Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()),
                    (name, Tensor::new(&[2i64, 1], &Device::Cpu).unwrap()),
                ],
            );
            assert_eq!(EvalData::load(&path).unwrap().labels, [2, 1], "{name}");
        }
        // `labels` wins over an alias; an alias's problems name its column.
        let mut both = df.clone();
        both.with_column(Series::new(LABELS.into(), vec![0i64, 0]).into_column())
            .unwrap();
        let path = dir.path().join("both.parquet");
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut both)
            .unwrap();
        assert_eq!(EvalData::load(&path).unwrap().labels, [0, 0]);
        let mut text = df.clone();
        text.with_column(Series::new("label_ids".into(), vec!["a", "b"]).into_column())
            .unwrap();
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut text)
            .unwrap();
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(err.contains("column `label_ids`: has type str"), "{err}");
    }

    /// A Parquet file of `tests/fixtures/eval_data` (written by its `make_fixture.py` with pyarrow).
    fn own_fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/eval_data")
            .join(name)
    }

    #[test]
    fn a_datasets_export_is_read_and_unreadable_types_are_errors() {
        // Text and example ids beside the tokens, int8 masks, `label`, token lists of their own
        // lengths, and columns of types the reader cannot read (decimal, float16), not read.
        let d = EvalData::load(&own_fixture("datasets_export.parquet")).unwrap();
        assert_eq!(d.labels, [1, 0, 1]);
        assert_eq!(d.inputs.to_vec2::<u32>().unwrap()[1], [101, 9, 102, 0, 0]);
        let mask = d.attention_mask.unwrap().to_vec2::<u32>().unwrap();
        assert_eq!(mask, [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]);
        assert_eq!(d.token_type_ids.unwrap().dims(), [3, 5]);
        // Token ids of a type the reader cannot read: an error naming the file, not a crash.
        let path = own_fixture("float16_ids.parquet");
        let err = EvalData::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("float16_ids.parquet") && err.contains("unreadable Parquet"),
            "{err}"
        );
    }

    #[test]
    fn unknown_extension_and_missing_file() {
        let err = EvalData::load(Path::new("/nonexistent/data.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.csv") && err.contains("unsupported"), "{err}");
        let err = EvalData::load(Path::new("/nonexistent/data.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/data.parquet"), "{err}");
    }
}
