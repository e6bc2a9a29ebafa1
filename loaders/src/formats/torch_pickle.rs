//! PyTorch zip-pickle checkpoints (`.bin`, `.pt`, `.pth`, `.ckpt`), read without executing code.
//!
//! A `torch.save` file is a zip archive holding `<archive>/data.pkl` (a pickle describing the saved
//! object) and one entry `<archive>/data/<key>` per tensor storage. Reading happens in three steps:
//!
//! 1. A pre-pass walks the pickle's opcodes without building anything: every `GLOBAL` must be on an
//!    allow-list of tensor-rebuilding names (as `torch.load(weights_only=True)`), lengths must fit in
//!    the data, and the objects the pickle would build are bounded in number, total size and nesting
//!    depth (memo bombs, deep nesting). Anything else refuses the file.
//! 2. candle's restricted pickle machine ([`candle_core::pickle::Stack`]) turns the opcodes into an
//!    [`Object`] tree; nothing is ever called.
//! 3. The tree is walked to find the state dict (top level, or under `state_dict` / `model_state_dict`
//!    / `model` / `module`) and its `_rebuild_tensor_v2` calls; storages are then read straight from
//!    their zip entries, after checking that every tensor fits in its storage.
//!
//! Some helpers here (zip opening, panic guard, bounded entry reads, strided tensor building) are
//! shared with the `.npz` reader.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use zip::{CompressionMethod, ZipArchive};

use super::{FileScan, TensorHeader, dtype_name};
use crate::error::{LoadError, Result};

const FORMAT: &str = "torch_pickle";

/// Largest `data.pkl` accepted (the pickle only describes tensors; real ones are a few MiB at most).
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Deepest nesting of pickled containers accepted.
const MAX_DEPTH: u32 = 256;
/// Accounting cost of one pickled object (roughly its in-memory size in candle's `Object`).
const NODE_COST: u64 = 64;
/// Fixed part of the budget for objects built (and cloned through the memo) while unpickling.
const BASE_BUDGET: u64 = 256 << 20;
/// Part of that budget proportional to the pickle size.
const BUDGET_PER_PICKLE_BYTE: u64 = 48;
/// Strings longer than this are not remembered by the pre-pass.
const MAX_TRACKED_TEXT: usize = 4096;

/// Header-only scan: parses only the `data.pkl` entry, never the tensor storages.
///
/// Storage entries are checked against the zip directory (their sizes must hold every tensor
/// declared on them), but their bytes are not read. `global_step` is taken from the top-level dict
/// when present (Lightning).
pub fn scan(path: &Path) -> Result<FileScan, LoadError> {
    guarded(path, FORMAT, || {
        let mut archive = Archive::open(path)?;
        let parsed = archive.parse()?;
        let mut tensors = Vec::with_capacity(parsed.tensors.len());
        for t in &parsed.tensors {
            archive.locate(t)?;
            tensors.push(TensorHeader {
                name: t.name.clone(),
                dtype: t.elem.name(),
                shape: t.shape.clone(),
            });
        }
        Ok(FileScan {
            tensors,
            global_step: parsed.global_step,
        })
    })
}

/// Reads all floating-point and integer tensors of the state dict.
///
/// Tensors come back C-contiguous on the CPU, in file order. `bool` tensors are returned as `u8`
/// and `int8` ones widened to `i16` (candle has neither dtype); complex and quantized tensors are
/// skipped. Names are as stored (Lightning's `model.` prefix is kept).
pub fn load(path: &Path) -> Result<Vec<(String, Tensor)>, LoadError> {
    load_selected(path, &|_| true)
}

/// [`load`] restricted to the tensors whose stored names `wanted` accepts. Every tensor of the state
/// dict is first checked against its storage entry in the zip directory (no data read); only then
/// are the wanted ones read, so a storage declared larger than the file costs nothing.
pub fn load_selected(path: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Tensor)>, LoadError> {
    guarded(path, FORMAT, || {
        let mut archive = Archive::open(path)?;
        let parsed = archive.parse()?;
        let mut located = Vec::with_capacity(parsed.tensors.len());
        for t in &parsed.tensors {
            let loc = archive.locate(t)?;
            if t.elem.is_loadable() && wanted(&t.name) {
                located.push((t, loc));
            }
        }
        let mut out = Vec::with_capacity(located.len());
        for (t, loc) in located {
            if let Some(tensor) = archive.read_tensor(t, &loc)? {
                out.push((t.name.clone(), tensor));
            }
        }
        Ok(out)
    })
}

// ---------------------------------------------------------------------------------------------
// Archive: zip access and the state-dict walk.
// ---------------------------------------------------------------------------------------------

/// An opened torch zip archive.
struct Archive<'p> {
    path: &'p Path,
    zip: Zip,
    /// Entry-name prefix of the archive (`archive/`, `pytorch_model/`, ...).
    prefix: String,
    /// Index of `<prefix>data.pkl`.
    pkl_index: usize,
    /// Size of the file on disk, to bound declared entry sizes.
    file_len: u64,
}

/// What the pickle says.
struct Parsed {
    tensors: Vec<TensorRef>,
    global_step: Option<u64>,
}

/// Where one tensor's bytes live.
struct Location {
    entry: String,
    index: usize,
    /// First byte of the tensor within the entry.
    start: u64,
    /// Bytes spanned by the tensor (from its first to its last element).
    len: u64,
}

impl<'p> Archive<'p> {
    fn open(path: &'p Path) -> Result<Self> {
        let zip = open_zip(path, FORMAT).map_err(|err| match (err, is_legacy_pickle(path)) {
            (LoadError::Malformed { .. }, true) => LoadError::malformed(
                path,
                FORMAT,
                "not a zip archive but a legacy (PyTorch < 1.6) torch.save pickle, which lineage does not \
                 read: re-save it with a recent PyTorch or convert it to safetensors",
            ),
            (other, _) => other,
        })?;
        let file_len = std::fs::metadata(path).map_err(|e| LoadError::io(path, e))?.len();
        let mut pkl = None;
        for index in 0..zip.len() {
            let Some(Ok(name)) = zip.name_for_index(index) else {
                continue;
            };
            let prefix = if name == "data.pkl" {
                Some(String::new())
            } else {
                name.strip_suffix("/data.pkl")
                    .filter(|p| !p.is_empty() && !p.contains('/'))
                    .map(|p| format!("{p}/"))
            };
            if let Some(prefix) = prefix {
                pkl = Some((prefix, index));
                break;
            }
        }
        let Some((prefix, pkl_index)) = pkl else {
            return Err(LoadError::malformed(
                path,
                FORMAT,
                "the zip archive has no `data.pkl` entry: not a PyTorch checkpoint written by torch.save",
            ));
        };
        Ok(Self {
            path,
            zip,
            prefix,
            pkl_index,
            file_len,
        })
    }

    fn malformed(&self, reason: impl ToString) -> LoadError {
        LoadError::malformed(self.path, FORMAT, reason)
    }

    /// Reads, checks and interprets `data.pkl`.
    fn parse(&mut self) -> Result<Parsed> {
        let pkl_name = format!("{}data.pkl", self.prefix);
        let path = self.path;
        let data = {
            let entry = self
                .zip
                .by_index(self.pkl_index)
                .map_err(|e| LoadError::malformed(path, FORMAT, format!("cannot open `{pkl_name}`: {e}")))?;
            let mut data = Vec::new();
            entry.take(MAX_PICKLE_BYTES + 1).read_to_end(&mut data).map_err(|e| {
                LoadError::malformed(
                    path,
                    FORMAT,
                    format!("cannot read `{pkl_name}` (truncated or corrupt archive?): {e}"),
                )
            })?;
            data
        };
        if data.len() as u64 > MAX_PICKLE_BYTES {
            return Err(self.malformed(format!("`{pkl_name}` is larger than {} MiB", MAX_PICKLE_BYTES >> 20)));
        }
        let checked = check_pickle(&data).map_err(|problem| match problem {
            PickleProblem::Unsafe(global) => LoadError::UnsafePickle {
                path: self.path.to_path_buf(),
                global,
            },
            PickleProblem::Malformed(reason) => self.malformed(format!("`{pkl_name}`: {reason}")),
        })?;
        let mut stack = Stack::empty();
        let mut reader: &[u8] = &checked.bytes;
        stack
            .read_loop(&mut reader)
            .map_err(|e| self.malformed(format!("`{pkl_name}`: cannot unpickle: {e}")))?;
        let root = stack
            .finalize()
            .map_err(|e| self.malformed(format!("`{pkl_name}`: cannot unpickle: {e}")))?;
        interpret(root, &checked.first_pos).map_err(|reason| self.malformed(reason))
    }

    /// Reads the bytes of a located tensor and builds it (`None` for element types loads skip).
    fn read_tensor(&mut self, t: &TensorRef, loc: &Location) -> Result<Option<Tensor>> {
        let path = self.path;
        let fail = |reason: String| {
            LoadError::malformed(
                path,
                FORMAT,
                format!("tensor `{}`: storage `{}`: {reason}", t.name, loc.entry),
            )
        };
        let bytes = read_entry_span(&mut self.zip, path, loc.index, loc.start, loc.len, &fail)?;
        build_tensor(&bytes, &t.elem, &t.shape, &t.stride)
            .map_err(|e| LoadError::malformed(path, FORMAT, format!("tensor `{}`: cannot build tensor: {e}", t.name)))
    }

    /// Finds a tensor's storage entry and checks that the storage holds the tensor; reads no data.
    fn locate(&self, t: &TensorRef) -> Result<Location> {
        let entry = format!("{}data/{}", self.prefix, t.storage);
        let fail = |reason: String| self.malformed(format!("tensor `{}`: {reason}", t.name));
        let index = self.zip.index_for_name(&entry).ok_or_else(|| {
            fail(format!(
                "its storage `{entry}` is missing from the archive (truncated or incomplete file?)"
            ))
        })?;
        let meta = self
            .zip
            .by_index_data(index)
            .map_err(|e| fail(format!("storage `{entry}`: {e}")))?;
        let entry_size = meta.size();
        check_entry_plausible(entry_size, meta.compressed_size(), meta.compression(), self.file_len)
            .map_err(|r| fail(format!("storage `{entry}`: {r}")))?;
        let elem_size = t.elem.size() as u64;
        let declared = t
            .storage_numel
            .checked_mul(elem_size)
            .ok_or_else(|| fail("absurd storage size".into()))?;
        if declared > entry_size {
            return Err(fail(format!(
                "storage `{entry}` holds {entry_size} bytes but the pickle declares {} {} elements ({declared} bytes): \
                 truncated file?",
                t.storage_numel,
                t.elem.name()
            )));
        }
        let (first, len) = t.span().map_err(&fail)?;
        if len > 0 && first + len > t.storage_numel {
            return Err(fail(format!(
                "shape {:?} with stride {:?} at offset {} needs {} elements but storage `{entry}` holds {}",
                t.shape,
                t.stride,
                t.offset,
                first + len,
                t.storage_numel
            )));
        }
        // Both products fit: first + len <= storage_numel, whose byte size was checked above.
        let start = if len == 0 { 0 } else { first * elem_size };
        Ok(Location {
            entry,
            index,
            start,
            len: len * elem_size,
        })
    }
}

/// True when the file starts like an old-style (non-zip) torch pickle.
fn is_legacy_pickle(path: &Path) -> bool {
    let mut head = [0u8; 2];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head[0] == 0x80 && head[1] <= 5
}

/// One tensor found in the pickle.
#[derive(Debug, Clone)]
struct TensorRef {
    name: String,
    elem: ElemType,
    /// Storage key: the entry is `<prefix>data/<key>`.
    storage: String,
    /// Declared storage size, in elements.
    storage_numel: u64,
    /// Offset of the first element in the storage, in elements.
    offset: u64,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    /// First element and number of storage elements spanned (0 for empty tensors).
    fn span(&self) -> std::result::Result<(u64, u64), String> {
        let span = strided_span(&self.shape, &self.stride).ok_or_else(|| "absurd shape or stride".to_string())?;
        if span == 0 {
            return Ok((self.offset, 0));
        }
        self.offset
            .checked_add(span)
            .ok_or_else(|| "absurd storage offset".to_string())?;
        Ok((self.offset, span))
    }
}

/// Number of elements between the first and the last element (inclusive) of a strided tensor, 0
/// when it is empty; `None` on overflow.
fn strided_span(shape: &[usize], stride: &[usize]) -> Option<u64> {
    if shape.len() != stride.len() {
        return None;
    }
    if shape.contains(&0) {
        return Some(0);
    }
    let mut last = 0u64;
    for (&dim, &st) in shape.iter().zip(stride) {
        last = last.checked_add((dim as u64 - 1).checked_mul(st as u64)?)?;
    }
    last.checked_add(1)
}

/// Turns the unpickled tree into tensor references.
fn interpret(root: Object, first_pos: &HashMap<String, usize>) -> std::result::Result<Parsed, String> {
    // TorchScript-style wrapper, as candle's reader accepts.
    let root = match root {
        Object::Build { callable, args } => match *callable {
            Object::Reduce { callable: inner, .. } if matches!(&*inner, Object::Class { module_name, .. } if module_name == "__torch__") => {
                *args
            }
            other => Object::Build {
                callable: Box::new(other),
                args,
            },
        },
        other => other,
    };
    let Object::Dict(top) = root else {
        return Ok(Parsed {
            tensors: Vec::new(),
            global_step: None,
        });
    };
    let global_step = top.iter().find_map(|(k, v)| match (k, v) {
        (Object::Unicode(k), Object::Int(i)) if k == "global_step" => u64::try_from(*i).ok(),
        (Object::Unicode(k), Object::Long(i)) if k == "global_step" => u64::try_from(*i).ok(),
        _ => None,
    });
    let nested = ["state_dict", "model_state_dict", "model", "module"]
        .iter()
        .find_map(|key| {
            top.iter().find_map(|(k, v)| match (k, v) {
                (Object::Unicode(k), Object::Dict(d))
                    if k == key && d.iter().any(|(_, v)| matches!(tensor_ref(v, 0), Ok(Some(_)))) =>
                {
                    Some(d)
                }
                _ => None,
            })
        });
    let state_dict = nested.unwrap_or(&top);
    let mut seen = HashSet::new();
    let mut tensors = Vec::new();
    for (key, value) in state_dict {
        let Object::Unicode(name) = key else { continue };
        let found = tensor_ref(value, 0).map_err(|reason| format!("tensor `{name}`: {reason}"))?;
        if let Some(mut t) = found
            && seen.insert(name.clone())
        {
            t.name = name.clone();
            tensors.push(t);
        }
    }
    // candle's SETITEMS reverses each batch; restore the order in which names appear in the file.
    tensors.sort_by_key(|t| first_pos.get(&t.name).copied().unwrap_or(usize::MAX));
    Ok(Parsed { tensors, global_step })
}

/// True when `obj` is the class `module.name`.
fn is_class(obj: &Object, module: &str, name: &str) -> bool {
    matches!(obj, Object::Class { module_name, class_name } if module_name == module && class_name == name)
}

/// Recognises a pickled tensor (`_rebuild_tensor_v2`, possibly wrapped as a parameter or a tensor
/// subclass). `Ok(None)` for anything that is not a tensor.
fn tensor_ref(obj: &Object, depth: u32) -> std::result::Result<Option<TensorRef>, String> {
    match obj {
        Object::Reduce { callable, args } => rebuild_call(callable, args, depth),
        Object::Build { callable, .. } if depth < 8 => tensor_ref(callable, depth + 1),
        _ => Ok(None),
    }
}

fn rebuild_call(callable: &Object, args: &Object, depth: u32) -> std::result::Result<Option<TensorRef>, String> {
    if depth > 8 {
        return Ok(None);
    }
    let Object::Class {
        module_name,
        class_name,
    } = callable
    else {
        return Ok(None);
    };
    let tuple = |min: usize| match args {
        Object::Tuple(items) if items.len() >= min => Ok(items),
        _ => Err(format!("`{module_name}.{class_name}` called with unexpected arguments")),
    };
    match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") => rebuild_tensor_v2(tuple(4)?).map(Some),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            tensor_ref(&tuple(1)?[0], depth + 1)
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            let items = tuple(3)?;
            rebuild_call(&items[0], &items[2], depth + 1)
        }
        _ => Ok(None),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, ...)`
/// where `storage` is the persistent id `("storage", torch.XStorage, key, location, numel)`.
fn rebuild_tensor_v2(args: &[Object]) -> std::result::Result<TensorRef, String> {
    let Object::PersistentLoad(pid) = &args[0] else {
        return Err("tensor without a storage reference".into());
    };
    let pid = match &**pid {
        Object::Tuple(items) if items.len() >= 5 && items[0] == Object::Unicode("storage".into()) => items,
        other => {
            return Err(format!("unexpected storage reference {}", short_debug(other)));
        }
    };
    let elem = match &pid[1] {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch" => {
            storage_elem(class_name).ok_or_else(|| format!("unknown storage type `torch.{class_name}`"))?
        }
        other => return Err(format!("unexpected storage type {}", short_debug(other))),
    };
    let storage = match &pid[2] {
        Object::Unicode(key) => key.clone(),
        other => return Err(format!("unexpected storage key {}", short_debug(other))),
    };
    let storage_numel = as_u64(&pid[4]).ok_or("storage size is not a non-negative integer")?;
    let offset = as_u64(&args[1]).ok_or("storage offset is not a non-negative integer")?;
    let shape = int_tuple(&args[2]).ok_or("size is not a tuple of non-negative integers")?;
    let stride = int_tuple(&args[3]).ok_or("stride is not a tuple of non-negative integers")?;
    if shape.len() != stride.len() {
        return Err(format!("size {shape:?} and stride {stride:?} have different ranks"));
    }
    Ok(TensorRef {
        name: String::new(),
        elem,
        storage,
        storage_numel,
        offset,
        shape,
        stride,
    })
}

fn as_u64(obj: &Object) -> Option<u64> {
    match obj {
        Object::Int(i) => u64::try_from(*i).ok(),
        Object::Long(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// A tuple of non-negative ints (also accepts `torch.Size((...))`).
fn int_tuple(obj: &Object) -> Option<Vec<usize>> {
    match obj {
        Object::Tuple(items) => items
            .iter()
            .map(|i| as_u64(i).and_then(|v| usize::try_from(v).ok()))
            .collect(),
        Object::Reduce { callable, args } if is_class(callable, "torch", "Size") => match &**args {
            Object::Tuple(inner) if inner.len() == 1 => int_tuple(&inner[0]),
            _ => None,
        },
        _ => None,
    }
}

fn short_debug(obj: &Object) -> String {
    let mut s = format!("{obj:?}");
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Element type of a legacy typed storage class (`torch.FloatStorage`, ...).
fn storage_elem(class_name: &str) -> Option<ElemType> {
    Some(match class_name {
        "FloatStorage" => ElemType::Candle(DType::F32),
        "DoubleStorage" => ElemType::Candle(DType::F64),
        "HalfStorage" => ElemType::Candle(DType::F16),
        "BFloat16Storage" => ElemType::Candle(DType::BF16),
        "LongStorage" => ElemType::Candle(DType::I64),
        "IntStorage" => ElemType::Candle(DType::I32),
        "ShortStorage" => ElemType::Candle(DType::I16),
        "ByteStorage" => ElemType::Candle(DType::U8),
        "CharStorage" => ElemType::I8,
        "BoolStorage" => ElemType::Bool,
        "ComplexFloatStorage" => ElemType::Other {
            name: "c64".into(),
            size: 8,
        },
        "ComplexDoubleStorage" => ElemType::Other {
            name: "c128".into(),
            size: 16,
        },
        "QInt8Storage" => ElemType::Other {
            name: "qint8".into(),
            size: 1,
        },
        "QUInt8Storage" => ElemType::Other {
            name: "quint8".into(),
            size: 1,
        },
        "QInt32Storage" => ElemType::Other {
            name: "qint32".into(),
            size: 4,
        },
        "QUInt4x2Storage" => ElemType::Other {
            name: "quint4x2".into(),
            size: 1,
        },
        "QUInt2x4Storage" => ElemType::Other {
            name: "quint2x4".into(),
            size: 1,
        },
        _ => return None,
    })
}

/// `torch.<dtype>` globals (pickled `torch.float32` and friends), harmless constants.
const TORCH_DTYPES: [&str; 24] = [
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "int64",
    "long",
    "int32",
    "int",
    "int16",
    "short",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "cfloat",
    "cdouble",
    "uint16",
    "uint32",
    "uint64",
    "chalf",
];

/// The allow-list of globals a checkpoint may reference (the tensor-rebuilding subset of
/// `torch.load(weights_only=True)`). Nothing is ever called; anything else refuses the file.
fn is_allowed_global(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor_v2" | "_rebuild_parameter" | "_rebuild_parameter_with_state"
        ),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            storage_elem(name).is_some() || matches!(name, "Size" | "device" | "Tensor") || TORCH_DTYPES.contains(&name)
        }
        "torch.nn.parameter" => name == "Parameter",
        // Python 3 pickles `builtins` as `__builtin__` at protocol 2.
        "builtins" | "__builtin__" => name == "set",
        // How protocol 2 pickles `bytes`.
        "_codecs" => name == "encode",
        "__torch__" => name == "Module",
        // Containers Lightning stores its hyper-parameters in; never called, only recorded.
        "pytorch_lightning.utilities.parsing"
        | "lightning.pytorch.utilities.parsing"
        | "lightning.fabric.utilities.data" => name == "AttributeDict",
        "argparse" => name == "Namespace",
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Pickle pre-pass: allow-list, lengths and resource bounds, before candle sees a byte.
// ---------------------------------------------------------------------------------------------

/// Why the pre-pass refused a pickle.
#[derive(Debug, PartialEq, Eq)]
enum PickleProblem {
    /// A global outside the allow-list (`module.name`).
    Unsafe(String),
    /// Anything else, explained.
    Malformed(String),
}

/// A pickle that passed the pre-pass.
struct CheckedPickle<'a> {
    /// The opcodes to feed to candle (possibly with harmless rewrites).
    bytes: Cow<'a, [u8]>,
    /// Byte offset of the first occurrence of each (short) string, to restore file order.
    first_pos: HashMap<String, usize>,
}

/// What the pre-pass knows of one object candle would build.
#[derive(Debug, Clone)]
struct Shadow {
    /// Approximate bytes the object occupies once built (with its children).
    cost: u64,
    /// Nesting depth (1 for a leaf).
    depth: u32,
    /// A MARK.
    mark: bool,
    /// Text of a short string.
    text: Option<String>,
}

impl Shadow {
    fn leaf(payload: usize) -> Self {
        Self {
            cost: NODE_COST + payload as u64,
            depth: 1,
            mark: false,
            text: None,
        }
    }
}

/// Walks the opcodes of a pickle, mirroring the stack effects of candle's `Stack`.
struct Checker<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being checked.
    op_pos: usize,
    stack: Vec<Shadow>,
    memo: HashMap<u32, Shadow>,
    spent: u64,
    budget: u64,
    rewrites: Vec<(usize, usize, &'static [u8])>,
    first_pos: HashMap<String, usize>,
    /// First opcode candle cannot read, explained.
    unsupported: Option<String>,
}

type Check<T> = std::result::Result<T, PickleProblem>;

fn bad<T>(reason: impl Into<String>) -> Check<T> {
    Err(PickleProblem::Malformed(reason.into()))
}

/// Runs the pre-pass on a whole pickle.
fn check_pickle(data: &[u8]) -> Check<CheckedPickle<'_>> {
    let mut checker = Checker {
        data,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        spent: 0,
        budget: BASE_BUDGET.saturating_add(BUDGET_PER_PICKLE_BYTE.saturating_mul(data.len() as u64)),
        rewrites: Vec::new(),
        first_pos: HashMap::new(),
        unsupported: None,
    };
    checker.run()?;
    let bytes = if checker.rewrites.is_empty() {
        Cow::Borrowed(&data[..checker.pos])
    } else {
        let mut out = Vec::with_capacity(checker.pos);
        let mut at = 0;
        for &(start, end, replacement) in &checker.rewrites {
            out.extend_from_slice(&data[at..start]);
            out.extend_from_slice(replacement);
            at = end;
        }
        out.extend_from_slice(&data[at..checker.pos]);
        Cow::Owned(out)
    };
    Ok(CheckedPickle {
        bytes,
        first_pos: checker.first_pos,
    })
}

impl Checker<'_> {
    /// Walks the opcodes up to STOP. A global outside the allow-list wins over any other problem;
    /// opcodes candle cannot read are noted and still followed (so a protocol-4 `STACK_GLOBAL` can be
    /// named), then refuse the file at the end.
    fn run(&mut self) -> Check<()> {
        let result = self.walk();
        match (result, self.unsupported.take()) {
            (Err(PickleProblem::Unsafe(global)), _) => Err(PickleProblem::Unsafe(global)),
            (_, Some(reason)) => Err(PickleProblem::Malformed(reason)),
            (result, None) => result,
        }
    }

    fn walk(&mut self) -> Check<()> {
        if self.data.is_empty() {
            return bad("empty pickle");
        }
        loop {
            self.op_pos = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?; // PROTO
                }
                b'.' => {
                    // STOP
                    if self.stack.is_empty() {
                        return bad("the pickle builds nothing");
                    }
                    return Ok(());
                }
                b'c' => {
                    // GLOBAL
                    let (module, name) = (self.line()?, self.line()?);
                    self.check_global(&module, &name)?;
                    self.push_new(Shadow::leaf(module.len() + name.len()))?;
                }
                b'K' => self.push_arg(1)?,
                b'M' => self.push_arg(2)?,
                b'J' => self.push_arg(4)?,
                b'G' => self.push_arg(8)?,
                0x8a => {
                    // LONG1: candle decodes at most 8 bytes; larger ints become None (never a tensor field).
                    let n = self.take(1)?[0] as usize;
                    self.take(n)?;
                    if n > 8 {
                        self.rewrites.push((self.op_pos, self.pos, b"N"));
                    }
                    self.push_new(Shadow::leaf(0))?;
                }
                0x8b => {
                    // LONG4: a huge int, rewritten as None.
                    let n = self.len4()?;
                    self.take(n)?;
                    self.rewrites.push((self.op_pos, self.pos, b"N"));
                    self.push_new(Shadow::leaf(0))?;
                }
                b'X' => {
                    // BINUNICODE
                    let n = self.len4()?;
                    self.push_text(n, true)?;
                }
                b'N' | 0x88 | 0x89 | b'}' | b']' | b')' => self.push_new(Shadow::leaf(0))?,
                b'(' => self.push_new(Shadow {
                    mark: true,
                    ..Shadow::leaf(0)
                })?,
                b'Q' => {
                    // BINPERSID
                    let id = self.pop()?;
                    self.push_combined(vec![id])?;
                }
                b't' | b'd' => {
                    // TUPLE, DICT
                    let items = self.pop_to_mark()?;
                    self.push_combined(items)?;
                }
                0x85..=0x87 => {
                    // TUPLE1..3
                    let items = self.pop_n((op - 0x84) as usize)?;
                    self.push_combined(items)?;
                }
                b'R' | b'b' | 0x81 => {
                    // REDUCE, BUILD, NEWOBJ
                    let items = self.pop_n(2)?;
                    self.push_combined(items)?;
                }
                b'a' => {
                    let items = self.pop_n(1)?;
                    self.merge_into_top(items)?;
                }
                b's' => {
                    let items = self.pop_n(2)?;
                    self.merge_into_top(items)?;
                }
                b'e' | b'u' => {
                    let items = self.pop_to_mark()?;
                    self.merge_into_top(items)?;
                }
                b'h' => {
                    let id = self.take(1)?[0] as u32;
                    self.memo_get(id)?;
                }
                b'j' => {
                    let id = self.u32()?;
                    self.memo_get(id)?;
                }
                b'q' => {
                    let id = self.take(1)?[0] as u32;
                    self.memo_put(id)?;
                }
                b'r' => {
                    let id = self.u32()?;
                    self.memo_put(id)?;
                }
                // Opcodes candle does not read: followed to name every global, then refused.
                0x8c | b'U' | b'C' => {
                    // SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES
                    self.note_unsupported(op);
                    let n = self.take(1)?[0] as usize;
                    self.push_text(n, op == 0x8c)?;
                }
                b'T' | b'B' => {
                    // BINSTRING, BINBYTES
                    self.note_unsupported(op);
                    let n = self.len4()?;
                    self.push_text(n, false)?;
                }
                0x8d | 0x8e | 0x96 => {
                    // BINUNICODE8, BINBYTES8, BYTEARRAY8
                    self.note_unsupported(op);
                    let n = self.len8()?;
                    self.push_text(n, op == 0x8d)?;
                }
                0x95 => {
                    // FRAME
                    self.note_unsupported(op);
                    self.take(8)?;
                }
                0x94 => {
                    // MEMOIZE
                    self.note_unsupported(op);
                    let id = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(id)?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    self.note_unsupported(op);
                    let name = self.pop()?.text;
                    let module = self.pop()?.text;
                    if let (Some(module), Some(name)) = (&module, &name) {
                        self.check_global(module, name)?;
                    }
                    self.push_new(Shadow::leaf(0))?;
                }
                b'i' => {
                    // INST
                    self.note_unsupported(op);
                    let (module, name) = (self.line()?, self.line()?);
                    self.check_global(&module, &name)?;
                    let items = self.pop_to_mark()?;
                    self.push_combined(items)?;
                }
                b'o' | 0x91 => {
                    // OBJ, FROZENSET
                    self.note_unsupported(op);
                    let items = self.pop_to_mark()?;
                    self.push_combined(items)?;
                }
                0x8f => {
                    // EMPTY_SET
                    self.note_unsupported(op);
                    self.push_new(Shadow::leaf(0))?;
                }
                0x90 => {
                    // ADDITEMS
                    self.note_unsupported(op);
                    let items = self.pop_to_mark()?;
                    self.merge_into_top(items)?;
                }
                0x92 => {
                    // NEWOBJ_EX
                    self.note_unsupported(op);
                    let items = self.pop_n(3)?;
                    self.push_combined(items)?;
                }
                b'0' => {
                    // POP
                    self.note_unsupported(op);
                    self.pop()?;
                }
                b'1' => {
                    // POP_MARK
                    self.note_unsupported(op);
                    self.pop_to_mark()?;
                }
                b'2' => {
                    // DUP
                    self.note_unsupported(op);
                    let top = self.pop()?;
                    self.stack.push(top.clone());
                    self.push_new(top)?;
                }
                other => {
                    self.note_unsupported(other);
                    return bad("unknown pickle opcode");
                }
            }
        }
    }

    fn check_global(&self, module: &str, name: &str) -> Check<()> {
        if is_allowed_global(module, name) {
            Ok(())
        } else {
            Err(PickleProblem::Unsafe(format!("{module}.{name}")))
        }
    }

    /// Remembers the first opcode candle cannot read.
    fn note_unsupported(&mut self, op: u8) {
        if self.unsupported.is_some() {
            return;
        }
        let name = match op {
            0x93 => "STACK_GLOBAL",
            0x94 => "MEMOIZE",
            0x95 => "FRAME",
            0x8c => "SHORT_BINUNICODE",
            0x8d => "BINUNICODE8",
            0x8e => "BINBYTES8",
            0x96 => "BYTEARRAY8",
            b'B' => "BINBYTES",
            b'C' => "SHORT_BINBYTES",
            b'T' => "BINSTRING",
            b'U' => "SHORT_BINSTRING",
            b'0' => "POP",
            b'1' => "POP_MARK",
            b'2' => "DUP",
            b'i' => "INST",
            b'o' => "OBJ",
            0x8f => "EMPTY_SET",
            0x90 => "ADDITEMS",
            0x91 => "FROZENSET",
            0x92 => "NEWOBJ_EX",
            b'I' | b'L' | b'S' | b'V' | b'F' | b'p' | b'g' | b'l' | b'P' => "protocol-0 text opcode",
            0x82..=0x84 => "EXT",
            _ => "unknown opcode",
        };
        self.unsupported = Some(format!(
            "unsupported pickle opcode 0x{op:02x} ({name}) at offset {}: only the protocol-2 pickles written by \
             torch.save are read",
            self.op_pos
        ));
    }

    /// A string (or bytes) of `n` bytes; `unicode` ones are tracked for names.
    fn push_text(&mut self, n: usize, unicode: bool) -> Check<()> {
        let start = self.pos;
        let bytes = self.take(n)?;
        let text = (unicode && n <= MAX_TRACKED_TEXT).then(|| String::from_utf8_lossy(bytes).into_owned());
        if let Some(text) = &text
            && !self.first_pos.contains_key(text)
        {
            self.first_pos.insert(text.clone(), start);
        }
        self.push_new(Shadow {
            text,
            ..Shadow::leaf(n)
        })
    }

    fn len8(&mut self) -> Check<usize> {
        let b = self.take(8)?;
        let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn take(&mut self, n: usize) -> Check<&[u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            _ => bad(format!(
                "truncated pickle: it ends inside the opcode at offset {} ({} bytes in all)",
                self.op_pos,
                self.data.len()
            )),
        }
    }

    fn u32(&mut self) -> Check<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len4(&mut self) -> Check<usize> {
        Ok(self.u32()? as usize)
    }

    /// A newline-terminated line, decoded as candle does (lossy UTF-8, trailing `\r` dropped).
    fn line(&mut self) -> Check<String> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return bad(format!(
                "truncated pickle: unterminated GLOBAL name at offset {}",
                self.op_pos
            ));
        };
        let mut line = &rest[..n];
        self.pos += n + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        Ok(String::from_utf8_lossy(line).into_owned())
    }

    fn charge(&mut self, cost: u64) -> Check<()> {
        self.spent = self.spent.saturating_add(cost);
        if self.spent > self.budget {
            return bad(format!(
                "the pickle would build more than {} MiB of objects (memo bomb?)",
                self.budget >> 20
            ));
        }
        Ok(())
    }

    fn push_new(&mut self, shadow: Shadow) -> Check<()> {
        self.charge(shadow.cost)?;
        self.stack.push(shadow);
        Ok(())
    }

    fn push_arg(&mut self, n: usize) -> Check<()> {
        self.take(n)?;
        self.push_new(Shadow::leaf(0))
    }

    fn pop(&mut self) -> Check<Shadow> {
        match self.stack.pop() {
            Some(s) => Ok(s),
            None => bad(format!("corrupt pickle: stack underflow at offset {}", self.op_pos)),
        }
    }

    fn pop_n(&mut self, n: usize) -> Check<Vec<Shadow>> {
        if self.stack.len() < n {
            return bad(format!("corrupt pickle: stack underflow at offset {}", self.op_pos));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_to_mark(&mut self) -> Check<Vec<Shadow>> {
        let Some(mark) = self.stack.iter().rposition(|s| s.mark) else {
            return bad(format!("corrupt pickle: no MARK before offset {}", self.op_pos));
        };
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn check_depth(&self, depth: u32) -> Check<()> {
        if depth > MAX_DEPTH {
            return bad(format!("the pickle nests objects more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    /// A new container holding `items`.
    fn push_combined(&mut self, items: Vec<Shadow>) -> Check<()> {
        let cost = items.iter().fold(NODE_COST, |acc, s| acc.saturating_add(s.cost));
        let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
        self.check_depth(depth)?;
        self.charge(NODE_COST)?;
        self.stack.push(Shadow {
            cost,
            depth,
            mark: false,
            text: None,
        });
        Ok(())
    }

    /// APPEND(S) / SETITEM(S): `items` move into the container on top of the stack.
    fn merge_into_top(&mut self, items: Vec<Shadow>) -> Check<()> {
        let op_pos = self.op_pos;
        let Some(top) = self.stack.last_mut() else {
            return bad(format!("corrupt pickle: stack underflow at offset {op_pos}"));
        };
        for item in items {
            top.cost = top.cost.saturating_add(item.cost);
            top.depth = top.depth.max(item.depth + 1);
        }
        let depth = top.depth;
        self.check_depth(depth)
    }

    fn memo_get(&mut self, id: u32) -> Check<()> {
        let Some(shadow) = self.memo.get(&id).cloned() else {
            return bad(format!(
                "corrupt pickle: memo entry {id} read before it is written (offset {})",
                self.op_pos
            ));
        };
        self.push_new(shadow)
    }

    fn memo_put(&mut self, id: u32) -> Check<()> {
        let Some(top) = self.stack.last().cloned() else {
            return bad(format!("corrupt pickle: stack underflow at offset {}", self.op_pos));
        };
        self.charge(top.cost)?;
        self.memo.insert(id, top);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the npz reader.
// ---------------------------------------------------------------------------------------------

/// A zip archive read from a file.
pub(crate) type Zip = ZipArchive<BufReader<File>>;

/// Opens `path` as a zip archive; a file that is not one is `Malformed`.
pub(crate) fn open_zip(path: &Path, format: &'static str) -> Result<Zip> {
    let file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    ZipArchive::new(BufReader::new(file)).map_err(|e| {
        LoadError::malformed(
            path,
            format,
            format!("not a readable zip archive (truncated or corrupt?): {e}"),
        )
    })
}

/// Runs `f`, turning a panic anywhere below it into a `Malformed` error naming `path`.
pub(crate) fn guarded<T>(path: &Path, format: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(LoadError::malformed(
                path,
                format,
                format!("the reader failed on this input: {msg}"),
            ))
        }
    }
}

/// Refuses entries whose declared size cannot be backed by the file (a stored entry larger than the
/// archive, or a compressed one beyond deflate's maximal ratio).
pub(crate) fn check_entry_plausible(
    size: u64,
    compressed: u64,
    method: CompressionMethod,
    file_len: u64,
) -> std::result::Result<(), String> {
    let max = if method == CompressionMethod::Stored {
        compressed.min(file_len)
    } else {
        compressed.min(file_len).saturating_mul(1100).saturating_add(1 << 16)
    };
    if size > max {
        return Err(format!(
            "the zip entry declares {size} bytes, more than the archive can hold (corrupt?)"
        ));
    }
    Ok(())
}

/// Reads `len` bytes of zip entry `index` after skipping `skip` bytes. Memory is reserved up front
/// (callers have checked `len` against the entry's plausible size) and an allocation failure is an
/// out-of-memory I/O error rather than an abort. `fail` turns a reason into the caller's error.
pub(crate) fn read_entry_span(
    zip: &mut Zip,
    path: &Path,
    index: usize,
    skip: u64,
    len: u64,
    fail: &dyn Fn(String) -> LoadError,
) -> Result<Vec<u8>> {
    let mut entry = zip
        .by_index(index)
        .map_err(|e| fail(format!("cannot open the zip entry: {e}")))?;
    let skipped = std::io::copy(&mut (&mut entry).take(skip), &mut std::io::sink())
        .map_err(|e| fail(format!("cannot read the zip entry: {e}")))?;
    if skipped < skip {
        return Err(fail(format!(
            "the zip entry ends after {skipped} bytes, before byte {skip} (truncated file?)"
        )));
    }
    let want = usize::try_from(len).map_err(|_| out_of_memory(path, len))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(want).map_err(|_| out_of_memory(path, len))?;
    (&mut entry)
        .take(len)
        .read_to_end(&mut buf)
        .map_err(|e| fail(format!("cannot read the zip entry: {e}")))?;
    if buf.len() < want {
        return Err(fail(format!(
            "the zip entry ends after {} bytes but bytes {skip}..{} are needed (truncated file?)",
            skip + buf.len() as u64,
            skip + len
        )));
    }
    Ok(buf)
}

fn out_of_memory(path: &Path, len: u64) -> LoadError {
    LoadError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("cannot allocate {len} bytes for a tensor"),
        ),
    )
}

/// Element type of a stored array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ElemType {
    /// A dtype candle holds as is.
    Candle(DType),
    /// `bool`, one byte, loaded as `u8`.
    Bool,
    /// `int8`, loaded widened to `i16`.
    I8,
    /// Anything else: reported by scans, skipped by loads. `size` is 0 when unknown.
    Other {
        /// Lowercase name for reports.
        name: String,
        /// Bytes per element (0 when unknown).
        size: usize,
    },
}

impl ElemType {
    /// Lowercase dtype name for reports.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Candle(d) => dtype_name(*d),
            Self::Bool => "bool".into(),
            Self::I8 => "i8".into(),
            Self::Other { name, .. } => name.clone(),
        }
    }

    /// Bytes per element (0 when unknown).
    pub(crate) fn size(&self) -> usize {
        match self {
            Self::Candle(d) => d.size_in_bytes(),
            Self::Bool | Self::I8 => 1,
            Self::Other { size, .. } => *size,
        }
    }

    /// True when a load returns tensors of this type.
    pub(crate) fn is_loadable(&self) -> bool {
        match self {
            Self::Candle(d) => d.size_in_bytes() > 0,
            Self::Bool | Self::I8 => true,
            Self::Other { .. } => false,
        }
    }
}

/// Builds a C-contiguous CPU tensor from little-endian elements laid out with `stride` (in elements,
/// relative to the start of `bytes`). `Ok(None)` for types loads skip. Bounds are checked.
pub(crate) fn build_tensor(
    bytes: &[u8],
    elem: &ElemType,
    shape: &[usize],
    stride: &[usize],
) -> std::result::Result<Option<Tensor>, String> {
    if !elem.is_loadable() {
        return Ok(None);
    }
    let es = elem.size();
    let span = strided_span(shape, stride).ok_or("absurd shape or stride")?;
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("absurd shape")?;
    let nbytes = n.checked_mul(es).ok_or("absurd shape")?;
    let span_bytes = usize::try_from(span)
        .ok()
        .and_then(|s| s.checked_mul(es))
        .ok_or("absurd shape")?;
    if span_bytes > bytes.len() {
        return Err(format!(
            "the tensor needs {span_bytes} bytes, only {} available",
            bytes.len()
        ));
    }
    let contiguous: Cow<'_, [u8]> = if is_c_contiguous(shape, stride) || n == 0 {
        Cow::Borrowed(&bytes[..nbytes])
    } else {
        let mut out = Vec::new();
        out.try_reserve_exact(nbytes)
            .map_err(|_| format!("cannot allocate {nbytes} bytes"))?;
        let rank = shape.len();
        let mut idx = vec![0usize; rank];
        let mut src = 0usize;
        for _ in 0..n {
            out.extend_from_slice(&bytes[src * es..src * es + es]);
            for d in (0..rank).rev() {
                idx[d] += 1;
                src = src.wrapping_add(stride[d]);
                if idx[d] < shape[d] {
                    break;
                }
                src = src.wrapping_sub(stride[d].wrapping_mul(shape[d]));
                idx[d] = 0;
            }
        }
        Cow::Owned(out)
    };
    let dev = &Device::Cpu;
    let tensor = match elem {
        ElemType::Candle(dtype) => Tensor::from_raw_buffer(&contiguous, *dtype, shape, dev),
        ElemType::Bool => Tensor::from_raw_buffer(&contiguous, DType::U8, shape, dev),
        ElemType::I8 => {
            let wide: Vec<i16> = contiguous.iter().map(|&b| b as i8 as i16).collect();
            Tensor::from_vec(wide, shape, dev)
        }
        ElemType::Other { .. } => return Ok(None),
    };
    tensor.map(Some).map_err(|e| e.to_string())
}

/// Row-major contiguity, ignoring the stride of size-1 dimensions (as candle does).
fn is_c_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut acc = 1usize;
    for (&dim, &st) in shape.iter().zip(stride).rev() {
        if dim > 1 && st != acc {
            return false;
        }
        acc = acc.saturating_mul(dim);
    }
    shape.len() == stride.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/digits-mlp")).join(rel)
    }

    const HF: &str = "zoo_hf_trainer/run_i0_o0/checkpoint-1500/pytorch_model.bin";
    const LIGHTNING: &str = "zoo_lightning/init0_order0/epoch=74-step=1500.ckpt";
    const REFERENCE: &str = "zoo_safetensors/init0_order0/step1500/model.safetensors";
    const NAMES: [&str; 6] = [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "fc3.weight",
        "fc3.bias",
    ];

    /// Writes a stored zip with the given entries.
    fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for (name, bytes) in entries {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    /// The entries of a real fixture archive.
    fn fixture_entries(rel: &str) -> Vec<(String, Vec<u8>)> {
        let mut zip = ZipArchive::new(File::open(fixture(rel)).unwrap()).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut e = zip.by_index(i).unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.name().unwrap().to_string(), data)
            })
            .collect()
    }

    /// Rewrites the HF fixture into `dir/name` after `edit` changed its entries.
    fn edited_fixture(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> std::path::PathBuf {
        let mut entries = fixture_entries(HF);
        edit(&mut entries);
        let path = dir.join(name);
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        write_zip(&path, &refs);
        path
    }

    fn malformed_reason(err: LoadError) -> String {
        match err {
            LoadError::Malformed { reason, .. } => {
                assert!(!reason.contains("reader failed"), "a panic was caught: {reason}");
                reason
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    // -- a tiny protocol-2 pickle writer for hand-made checkpoints --

    fn unicode(s: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }

    fn int(i: i32) -> Vec<u8> {
        let mut v = vec![b'J'];
        v.extend_from_slice(&i.to_le_bytes());
        v
    }

    fn int_tuple_bytes(items: &[i32]) -> Vec<u8> {
        let mut v = vec![b'('];
        for &i in items {
            v.extend(int(i));
        }
        v.push(b't');
        v
    }

    /// `_rebuild_tensor_v2(("storage", torch.<class>, key, "cpu", numel), offset, size, stride, False, OrderedDict())`.
    fn tensor_pickle(class: &str, key: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Vec<u8> {
        let mut v = global("torch._utils", "_rebuild_tensor_v2");
        v.push(b'(');
        v.push(b'(');
        v.extend(unicode("storage"));
        v.extend(global("torch", class));
        v.extend(unicode(key));
        v.extend(unicode("cpu"));
        v.extend(int(numel));
        v.push(b't');
        v.push(b'Q');
        v.extend(int(offset));
        v.extend(int_tuple_bytes(size));
        v.extend(int_tuple_bytes(stride));
        v.push(0x89);
        v.extend(global("collections", "OrderedDict"));
        v.push(b')');
        v.push(b'R');
        v.push(b't');
        v.push(b'R');
        v
    }

    /// A dict pickle `{name: value_pickle, ...}`.
    fn dict_pickle(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![0x80, 2, b'}', b'('];
        for (k, val) in items {
            v.extend(unicode(k));
            v.extend_from_slice(val);
        }
        v.extend_from_slice(b"u.");
        v
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn hf_trainer_fixture_scans_and_loads_like_safetensors() {
        let path = fixture(HF);
        let scan = scan(&path).unwrap();
        let names: Vec<&str> = scan.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, NAMES);
        assert_eq!(scan.tensors[0].shape, vec![128, 64]);
        assert_eq!(scan.tensors[5].shape, vec![10]);
        assert!(scan.tensors.iter().all(|t| t.dtype == "f32"));
        assert_eq!(scan.global_step, None);

        let loaded = load(&path).unwrap();
        let reference = candle_core::safetensors::load(fixture(REFERENCE), &Device::Cpu).unwrap();
        assert_eq!(loaded.len(), 6);
        for (name, tensor) in &loaded {
            let want = &reference[name.as_str()];
            assert_eq!(tensor.dims(), want.dims(), "{name}");
            let got: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn lightning_fixture_finds_state_dict_and_global_step() {
        let path = fixture(LIGHTNING);
        let scan = scan(&path).unwrap();
        let names: Vec<String> = scan.tensors.iter().map(|t| t.name.clone()).collect();
        let want: Vec<String> = NAMES.iter().map(|n| format!("model.{n}")).collect();
        assert_eq!(names, want);
        assert_eq!(scan.global_step, Some(1500));

        let loaded = load(&path).unwrap();
        let reference = candle_core::safetensors::load(fixture(REFERENCE), &Device::Cpu).unwrap();
        assert_eq!(loaded.len(), 6);
        for (name, tensor) in &loaded {
            let want = &reference[name.strip_prefix("model.").unwrap()];
            let got: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn os_system_is_refused_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil.bin");
        write_zip(
            &path,
            &[("archive/data.pkl", b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.")],
        );
        for err in [scan(&path).unwrap_err(), load(&path).map(|_| ()).unwrap_err()] {
            match &err {
                LoadError::UnsafePickle { global, .. } => assert_eq!(global, "os.system"),
                other => panic!("expected UnsafePickle, got {other:?}"),
            }
            assert!(err.to_string().contains("evil.bin"), "{err}");
        }
    }

    #[test]
    fn lightning_hyper_parameter_containers_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hp.ckpt");
        let mut hparams = global("pytorch_lightning.utilities.parsing", "AttributeDict");
        hparams.extend_from_slice(b")R");
        let pkl = dict_pickle(&[("state_dict", b"}".to_vec()), ("hyper_parameters", hparams)]);
        write_zip(&path, &[("a/data.pkl", &pkl)]);
        assert!(!matches!(scan(&path), Err(LoadError::UnsafePickle { .. })));
    }

    #[test]
    fn unsafe_global_anywhere_is_refused() {
        // Deep inside a non-tensor field of a Lightning-like checkpoint.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hparams.ckpt");
        let mut hparams = global("subprocess", "Popen");
        hparams.extend_from_slice(b")R");
        let pkl = dict_pickle(&[("state_dict", b"}".to_vec()), ("hyper_parameters", hparams)]);
        write_zip(&path, &[("a/data.pkl", &pkl)]);
        assert!(matches!(scan(&path), Err(LoadError::UnsafePickle { global, .. }) if global == "subprocess.Popen"));
        // Protocol 4 STACK_GLOBAL is named too.
        let path = dir.path().join("p4.pt");
        write_zip(
            &path,
            &[("a/data.pkl", b"\x80\x04X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93.")],
        );
        assert!(matches!(scan(&path), Err(LoadError::UnsafePickle { global, .. }) if global == "os.system"));
    }

    #[test]
    fn truncated_pickle_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = edited_fixture(dir.path(), "cut.bin", |entries| {
            let pkl = &mut entries.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap().1;
            pkl.truncate(pkl.len() / 2);
        });
        let reason = malformed_reason(scan(&path).unwrap_err());
        assert!(reason.contains("truncated") && reason.contains("data.pkl"), "{reason}");
        assert!(matches!(load(&path), Err(LoadError::Malformed { .. })));
    }

    #[test]
    fn zip_without_data_pkl_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nopkl.pt");
        write_zip(&path, &[("archive/data/0", &[0u8; 16]), ("archive/version", b"3\n")]);
        let err = scan(&path).unwrap_err();
        assert!(err.to_string().contains("nopkl.pt"), "{err}");
        assert!(malformed_reason(err).contains("data.pkl"));
    }

    #[test]
    fn short_or_missing_storage_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let short = edited_fixture(dir.path(), "short.bin", |entries| {
            let data0 = &mut entries.iter_mut().find(|(n, _)| n.ends_with("data/0")).unwrap().1;
            data0.truncate(1000);
        });
        for err in [scan(&short).unwrap_err(), load(&short).map(|_| ()).unwrap_err()] {
            let reason = malformed_reason(err);
            assert!(reason.contains("fc1.weight") && reason.contains("data/0"), "{reason}");
        }
        let missing = edited_fixture(dir.path(), "missing.bin", |entries| {
            entries.retain(|(n, _)| !n.ends_with("data/3"))
        });
        let reason = malformed_reason(load(&missing).unwrap_err());
        assert!(reason.contains("fc2.bias") && reason.contains("missing"), "{reason}");
    }

    #[test]
    fn tensor_larger_than_its_storage_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liar.pt");
        let pkl = dict_pickle(&[(
            "w",
            tensor_pickle("FloatStorage", "0", 4, 0, &[1 << 30, 1 << 30], &[1 << 30, 1]),
        )]);
        write_zip(&path, &[("a/data.pkl", &pkl), ("a/data/0", &f32_bytes(&[1.0; 4]))]);
        let reason = malformed_reason(scan(&path).unwrap_err());
        assert!(reason.contains("`w`") && reason.contains("needs"), "{reason}");
        assert!(load(&path).is_err());
        // Declared storage bigger than the entry.
        let pkl = dict_pickle(&[("w", tensor_pickle("FloatStorage", "0", i32::MAX, 0, &[2], &[1]))]);
        write_zip(&path, &[("a/data.pkl", &pkl), ("a/data/0", &f32_bytes(&[1.0; 4]))]);
        assert!(malformed_reason(load(&path).unwrap_err()).contains("holds 16 bytes"));
    }

    #[test]
    fn garbage_and_legacy_files_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.pt");
        std::fs::write(&path, b"this is not a zip file at all").unwrap();
        let err = scan(&path).unwrap_err();
        assert!(
            err.to_string().contains("junk.pt") && err.to_string().contains("zip"),
            "{err}"
        );
        std::fs::write(&path, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
        assert!(malformed_reason(load(&path).unwrap_err()).contains("legacy"));
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(scan(&path), Err(LoadError::Malformed { .. })));
        // A real checkpoint cut in half loses its zip directory.
        let bytes = std::fs::read(fixture(HF)).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(scan(&path), Err(LoadError::Malformed { .. })));
    }

    #[test]
    fn hostile_pickles_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.pt");
        // Memo bomb: each step doubles the object through two memo reads.
        let mut pkl = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..64 {
            pkl.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        pkl.push(b'.');
        write_zip(&path, &[("a/data.pkl", &pkl)]);
        assert!(malformed_reason(scan(&path).unwrap_err()).contains("memo bomb"));
        // Deep nesting.
        let mut pkl = vec![0x80, 2];
        pkl.extend(std::iter::repeat_n(b']', 100_000));
        pkl.extend(std::iter::repeat_n(b'a', 99_999));
        pkl.push(b'.');
        write_zip(&path, &[("a/data.pkl", &pkl)]);
        assert!(malformed_reason(scan(&path).unwrap_err()).contains("deep"));
        // A string longer than the pickle, an unknown opcode, a stack underflow, a missing memo.
        for pkl in [
            &b"\x80\x02X\xff\xff\xff\xff."[..],
            b"\x80\x02\xff.",
            b"\x80\x02t.",
            b"\x80\x02h\x07.",
            b"\x80\x02.",
        ] {
            write_zip(&path, &[("a/data.pkl", pkl)]);
            assert!(matches!(scan(&path), Err(LoadError::Malformed { .. })), "{pkl:?}");
        }
    }

    #[test]
    fn strided_offset_and_other_dtypes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.pt");
        // Fortran-ordered 2x3 view at offset 1 of a 7-element storage: [[1,3,5],[2,4,6]].
        let fortran = tensor_pickle("FloatStorage", "0", 7, 1, &[2, 3], &[1, 2]);
        // Every other element: [0, 2, 4].
        let gapped = tensor_pickle("FloatStorage", "0", 7, 0, &[3], &[2]);
        let long = tensor_pickle("LongStorage", "1", 1, 0, &[], &[]);
        let half = tensor_pickle("HalfStorage", "2", 2, 0, &[2], &[1]);
        let bools = tensor_pickle("BoolStorage", "3", 2, 0, &[2], &[1]);
        let complex = tensor_pickle("ComplexFloatStorage", "4", 1, 0, &[1], &[1]);
        // A parameter wrapping a tensor, and a huge int elsewhere (LONG1 with 9 bytes).
        let mut param = global("torch._utils", "_rebuild_parameter");
        param.push(b'(');
        param.extend(tensor_pickle("FloatStorage", "0", 7, 6, &[1], &[1]));
        param.extend_from_slice(&[0x88]);
        param.extend(global("collections", "OrderedDict"));
        param.extend_from_slice(b")Rt");
        param.push(b'R');
        let mut pkl = dict_pickle(&[
            ("f", fortran),
            ("g", gapped),
            ("step", int(3)),
            ("n", long),
            ("h", half),
            ("b", bools),
            ("c", complex),
            ("p", param),
        ]);
        let big_int = [0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        pkl.splice(pkl.len() - 2..pkl.len() - 2, unicode("big").into_iter().chain(big_int));
        let half_bytes: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-2.0)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        write_zip(
            &path,
            &[
                ("a/data.pkl", &pkl),
                ("a/data/0", &f32_bytes(&[0., 1., 2., 3., 4., 5., 6.])),
                ("a/data/1", &42i64.to_le_bytes()),
                ("a/data/2", &half_bytes),
                ("a/data/3", &[1, 0]),
                ("a/data/4", &[0; 8]),
            ],
        );
        let scan = scan(&path).unwrap();
        let summary: Vec<(String, String)> = scan.tensors.iter().map(|t| (t.name.clone(), t.dtype.clone())).collect();
        let expected = [
            ("f", "f32"),
            ("g", "f32"),
            ("n", "i64"),
            ("h", "f16"),
            ("b", "bool"),
            ("c", "c64"),
            ("p", "f32"),
        ];
        assert_eq!(summary, expected.map(|(a, b)| (a.to_string(), b.to_string())));

        let loaded: HashMap<String, Tensor> = load(&path).unwrap().into_iter().collect();
        assert!(!loaded.contains_key("c"), "complex tensors are skipped");
        assert_eq!(
            loaded["f"].to_vec2::<f32>().unwrap(),
            vec![vec![1., 3., 5.], vec![2., 4., 6.]]
        );
        assert_eq!(loaded["g"].to_vec1::<f32>().unwrap(), vec![0., 2., 4.]);
        assert_eq!(loaded["n"].to_scalar::<i64>().unwrap(), 42);
        assert_eq!(
            loaded["h"].to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
            vec![0.5, -2.0]
        );
        assert_eq!(loaded["b"].to_vec1::<u8>().unwrap(), vec![1, 0]);
        assert_eq!(loaded["p"].to_vec1::<f32>().unwrap(), vec![6.]);
    }

    #[test]
    fn model_key_and_setitems_order() {
        // `{"model": state_dict, "epoch": 3}` with many tensors in one SETITEMS batch keeps file order.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.pth");
        let names: Vec<String> = (0..12).map(|i| format!("layer{i}.w")).collect();
        let items: Vec<(&str, Vec<u8>)> = names
            .iter()
            .map(|n| (n.as_str(), tensor_pickle("FloatStorage", "0", 1, 0, &[1], &[1])))
            .collect();
        let inner = dict_pickle(&items);
        let mut pkl = vec![0x80, 2, b'}', b'('];
        pkl.extend(unicode("epoch"));
        pkl.extend(int(3));
        pkl.extend(unicode("model"));
        pkl.extend_from_slice(&inner[2..inner.len() - 1]);
        pkl.extend_from_slice(b"u.");
        write_zip(&path, &[("a/data.pkl", &pkl), ("a/data/0", &f32_bytes(&[1.0]))]);
        let scan = scan(&path).unwrap();
        let got: Vec<&str> = scan.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(scan.global_step, None);
    }
}
