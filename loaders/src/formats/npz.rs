//! NumPy `.npz` archives: a zip (stored or deflated) of `.npy` files, one array each.
//!
//! Each `.npy` entry starts with `\x93NUMPY`, a version, a header length and a Python dict literal
//! such as `{'descr': '<f4', 'fortran_order': False, 'shape': (500, 64), }`, followed by the raw
//! elements. The header is parsed here (not evaluated), sizes are checked against the zip
//! directory, and object arrays (which would need unpickling) are never read.

use std::io::Read;
use std::path::Path;

use candle_core::{DType, Tensor};

use super::torch_pickle::{ElemType, Zip, build_tensor, check_entry_plausible, guarded, open_zip, read_entry_span};
use super::{FileScan, TensorHeader};
use crate::error::{LoadError, Result};

const FORMAT: &str = "npz";
const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest `.npy` header accepted (numpy itself writes a few hundred bytes).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Deepest nesting accepted in a header literal.
const MAX_LITERAL_DEPTH: u32 = 16;

/// Header-only scan: reads only the `.npy` headers inside the zip (names are the entry names without
/// `.npy`), and checks each entry is long enough for the shape and dtype it declares.
pub fn scan(path: &Path) -> Result<FileScan, LoadError> {
    guarded(path, FORMAT, || {
        let (mut zip, file_len) = open(path)?;
        let mut tensors = Vec::new();
        for index in 0..zip.len() {
            if let Some(array) = read_header(&mut zip, path, index, file_len)? {
                tensors.push(TensorHeader {
                    dtype: array.elem.name(),
                    name: array.name,
                    shape: array.shape,
                });
            }
        }
        Ok(FileScan {
            tensors,
            global_step: None,
        })
    })
}

/// Loads every numeric array of the archive onto the CPU as a C-contiguous tensor, in archive order.
///
/// Little- and big-endian `f2/f4/f8`, `i2/i4/i8`, `u1/u4` and `b1` arrays are read, in C or
/// Fortran order; `bool` arrays come back as `u8` and `int8` ones widened to `i16`. Arrays of other
/// dtypes (strings, objects, complex, ...) are skipped.
pub fn load(path: &Path) -> Result<Vec<(String, Tensor)>, LoadError> {
    load_selected(path, &|_| true)
}

/// [`load`] restricted to the arrays whose names `wanted` accepts. Every `.npy` header is read and
/// checked against its zip entry first (no element read); only then are the wanted arrays read.
pub fn load_selected(path: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Tensor)>, LoadError> {
    guarded(path, FORMAT, || {
        let (mut zip, file_len) = open(path)?;
        let mut arrays = Vec::new();
        for index in 0..zip.len() {
            let Some(array) = read_header(&mut zip, path, index, file_len)? else {
                continue;
            };
            if let (Some(nbytes), true, true) = (array.nbytes, array.elem.is_loadable(), wanted(&array.name)) {
                arrays.push((index, nbytes, array));
            }
        }
        let mut out = Vec::with_capacity(arrays.len());
        for (index, nbytes, array) in arrays {
            if let Some(tensor) = read_array(&mut zip, path, index, nbytes, &array)? {
                out.push((array.name, tensor));
            }
        }
        Ok(out)
    })
}

/// Reads the elements of a checked array (`nbytes` of them after its header) and builds the tensor.
fn read_array(zip: &mut Zip, path: &Path, index: usize, nbytes: u64, array: &NpyArray) -> Result<Option<Tensor>> {
    let fail = |reason: String| array.malformed(path, reason);
    let mut bytes = read_entry_span(zip, path, index, array.data_start, nbytes, &fail)?;
    let size = array.elem.size();
    if array.swap && size > 1 {
        bytes.chunks_exact_mut(size).for_each(<[u8]>::reverse);
    }
    let stride = strides(&array.shape, array.fortran);
    build_tensor(&bytes, &array.elem, &array.shape, &stride).map_err(|e| fail(format!("cannot build tensor: {e}")))
}

/// Opens the archive and returns it with the file size.
fn open(path: &Path) -> Result<(Zip, u64)> {
    let zip = open_zip(path, FORMAT)?;
    let file_len = std::fs::metadata(path).map_err(|e| LoadError::io(path, e))?.len();
    Ok((zip, file_len))
}

/// What an `.npy` header declares.
#[derive(Debug)]
struct NpyArray {
    /// Entry name without `.npy`.
    name: String,
    elem: ElemType,
    /// Big-endian data on this (little-endian) machine.
    swap: bool,
    fortran: bool,
    shape: Vec<usize>,
    /// Offset of the first element within the entry.
    data_start: u64,
    /// Bytes of element data, when the element size is known.
    nbytes: Option<u64>,
}

impl NpyArray {
    fn malformed(&self, path: &Path, reason: impl std::fmt::Display) -> LoadError {
        LoadError::malformed(path, FORMAT, format!("array `{}`: {reason}", self.name))
    }
}

/// Reads and checks the header of entry `index`; `None` for entries that are not `.npy` files.
fn read_header(zip: &mut Zip, path: &Path, index: usize, file_len: u64) -> Result<Option<NpyArray>> {
    let malformed = |reason: String| LoadError::malformed(path, FORMAT, reason);
    let mut entry = zip
        .by_index(index)
        .map_err(|e| malformed(format!("cannot open zip entry #{index}: {e}")))?;
    if entry.is_dir() {
        return Ok(None);
    }
    let entry_name = entry
        .name()
        .map_err(|e| malformed(format!("zip entry #{index} has an unreadable name: {e}")))?
        .into_owned();
    let Some(name) = entry_name.strip_suffix(".npy") else {
        return Ok(None);
    };
    let name = name.to_string();
    let fail = |reason: String| malformed(format!("array `{name}`: {reason}"));
    let entry_size = entry.size();
    check_entry_plausible(entry_size, entry.compressed_size(), entry.compression(), file_len).map_err(&fail)?;

    let read = |entry: &mut dyn Read, n: usize| -> std::result::Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        entry
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the npy header: {e}"))?;
        if buf.len() < n {
            return Err("the entry ends inside the npy header (truncated?)".into());
        }
        Ok(buf)
    };
    let lead = read(&mut entry, MAGIC.len() + 2).map_err(&fail)?;
    if &lead[..MAGIC.len()] != MAGIC {
        return Err(fail("not an npy file (bad magic bytes)".into()));
    }
    let len_bytes = match lead[MAGIC.len()] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(fail(format!("unsupported npy format version {v}"))),
    };
    let raw_len = read(&mut entry, len_bytes).map_err(&fail)?;
    let header_len = raw_len.iter().rev().fold(0usize, |acc, &b| (acc << 8) | b as usize);
    if header_len > MAX_HEADER_BYTES {
        return Err(fail(format!("npy header of {header_len} bytes is implausibly large")));
    }
    let header = read(&mut entry, header_len).map_err(&fail)?;
    let header = parse_header(&String::from_utf8_lossy(&header)).map_err(|e| fail(format!("bad npy header: {e}")))?;
    let data_start = (MAGIC.len() + 2 + len_bytes + header_len) as u64;
    let (elem, swap) = parse_descr(&header.descr);
    let size = elem.size() as u64;
    let nbytes = if size == 0 {
        None
    } else {
        let n = header
            .shape
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| fail(format!("shape {:?} is absurdly large", header.shape)))?;
        let have = entry_size.saturating_sub(data_start);
        if n > have {
            return Err(fail(format!(
                "shape {:?} of {} needs {n} bytes but the entry holds {have} (truncated?)",
                header.shape,
                elem.name()
            )));
        }
        Some(n)
    };
    Ok(Some(NpyArray {
        name,
        elem,
        swap,
        fortran: header.fortran_order,
        shape: header.shape,
        data_start,
        nbytes,
    }))
}

/// Element strides of a C- or Fortran-ordered array.
fn strides(shape: &[usize], fortran: bool) -> Vec<usize> {
    let mut stride = vec![0; shape.len()];
    let mut acc = 1usize;
    let order: Vec<usize> = if fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for d in order {
        stride[d] = acc;
        acc = acc.saturating_mul(shape[d]);
    }
    stride
}

/// The three fields of an `.npy` header.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    descr: Py,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header dict literal (never evaluates it).
fn parse_header(text: &str) -> std::result::Result<NpyHeader, String> {
    let mut lit = Literal {
        s: text.as_bytes(),
        pos: 0,
    };
    let value = lit.value(0)?;
    lit.ws();
    if lit.pos < lit.s.len() {
        return Err(format!("unexpected text after the header dict at byte {}", lit.pos));
    }
    let Py::Dict(items) = value else {
        return Err("the header is not a dict".into());
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    let descr = get("descr").ok_or("no `descr` key")?.clone();
    let fortran_order = match get("fortran_order") {
        None => false,
        Some(Py::Bool(b)) => *b,
        Some(other) => return Err(format!("`fortran_order` is {other:?}, not True/False")),
    };
    let shape = match get("shape").ok_or("no `shape` key")? {
        Py::Seq(dims) => dims
            .iter()
            .map(|d| match d {
                Py::Int(i) => usize::try_from(*i).map_err(|_| format!("negative dimension {i}")),
                other => Err(format!("dimension {other:?} is not an integer")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        other => return Err(format!("`shape` is {other:?}, not a tuple")),
    };
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
    })
}

/// Element type and byte order of a `descr`. Unknown ones become [`ElemType::Other`].
fn parse_descr(descr: &Py) -> (ElemType, bool) {
    let Py::Str(descr) = descr else {
        return (
            ElemType::Other {
                name: "structured".into(),
                size: 0,
            },
            false,
        );
    };
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'=' | b'|') => (descr.as_bytes()[0], &descr[1..]),
        _ => (b'=', descr.as_str()),
    };
    let big = match order {
        b'>' => true,
        b'<' => false,
        _ => cfg!(target_endian = "big"),
    };
    let swap = big != cfg!(target_endian = "big");
    let other = |name: &str, size: usize| ElemType::Other {
        name: name.into(),
        size,
    };
    let elem = match code {
        "f2" | "e" => ElemType::Candle(DType::F16),
        "f4" | "f" => ElemType::Candle(DType::F32),
        "f8" | "d" => ElemType::Candle(DType::F64),
        "i8" | "q" => ElemType::Candle(DType::I64),
        "i4" | "i" => ElemType::Candle(DType::I32),
        "i2" | "h" => ElemType::Candle(DType::I16),
        "i1" | "b" => ElemType::I8,
        "u1" | "B" => ElemType::Candle(DType::U8),
        "u4" | "I" => ElemType::Candle(DType::U32),
        "b1" | "?" => ElemType::Bool,
        "u2" | "H" => other("u16", 2),
        "u8" | "Q" => other("u64", 8),
        "c8" | "F" => other("c64", 8),
        "c16" | "D" => other("c128", 16),
        "O" => other("object", 0),
        _ => {
            let mut chars = code.chars();
            match (chars.next(), chars.as_str().parse::<usize>()) {
                (Some('U'), Ok(n)) => other("str", n.saturating_mul(4)),
                (Some('S'), Ok(n)) => other("bytes", n),
                (Some('V'), Ok(n)) => other("void", n),
                _ if code.len() <= 16 => other(code, 0),
                _ => other("unknown", 0),
            }
        }
    };
    (elem, swap)
}

/// A Python literal as found in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Py {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    /// Tuple or list.
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

/// A small recursive-descent reader of Python literals.
struct Literal<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Literal<'_> {
    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: u32) -> std::result::Result<Py, String> {
        if depth > MAX_LITERAL_DEPTH {
            return Err("literal nested too deeply".into());
        }
        self.ws();
        let start = self.pos;
        match self.peek() {
            None => Err("unexpected end of header".into()),
            Some(b'{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Py::Dict(items));
                    }
                    let key = self.value(depth + 1)?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(format!("expected `:` at byte {}", self.pos));
                    }
                    self.pos += 1;
                    let value = self.value(depth + 1)?;
                    items.push((key, value));
                    if !self.separator(b'}')? {
                        return Ok(Py::Dict(items));
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(Py::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if !self.separator(close)? {
                        return Ok(Py::Seq(items));
                    }
                }
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.pos += 1;
                let mut text = Vec::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(format!("unterminated string starting at byte {start}"));
                        }
                        Some(b'\\') => {
                            text.extend(self.s.get(self.pos + 1).copied());
                            self.pos += 2;
                        }
                        Some(c) => {
                            self.pos += 1;
                            if c == quote {
                                return Ok(Py::Str(String::from_utf8_lossy(&text).into_owned()));
                            }
                            text.push(c);
                        }
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                if matches!(self.peek(), Some(b'L' | b'l')) {
                    self.pos += 1; // Python 2 long suffix
                }
                digits
                    .parse::<i64>()
                    .map(Py::Int)
                    .map_err(|_| format!("bad integer `{digits}`"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Py::Bool(true)),
                    b"False" => Ok(Py::Bool(false)),
                    b"None" => Ok(Py::None),
                    other => Err(format!("unexpected name `{}`", String::from_utf8_lossy(other))),
                }
            }
            Some(c) => Err(format!("unexpected character `{}` at byte {start}", c as char)),
        }
    }

    /// After an item: consumes `,` (true: more may follow) or `close` (false: done).
    fn separator(&mut self, close: u8) -> std::result::Result<bool, String> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(format!("expected `,` or `{}` at byte {}", close as char, self.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::Write;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/digits-mlp")).join(rel)
    }

    /// An `.npy` file (format 1.0) with the given header fields and raw data.
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let fortran = if fortran { "True" } else { "False" };
        npy_with_header(
            &format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"),
            data,
        )
    }

    /// An `.npy` file (format 1.0) with a literal header text, padded as numpy does.
    fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut header = header.to_string();
        while !(MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn write_npz(path: &Path, entries: &[(&str, Vec<u8>)], deflate: bool) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in entries {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
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

    #[test]
    fn fixture_matches_safetensors() {
        let path = fixture("digits_eval.npz");
        let scan = scan(&path).unwrap();
        let heads: Vec<(&str, &str, Vec<usize>)> = scan
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype.as_str(), t.shape.clone()))
            .collect();
        assert_eq!(
            heads,
            vec![("inputs", "f32", vec![500, 64]), ("labels", "i64", vec![500])]
        );
        assert_eq!(scan.global_step, None);

        let loaded: HashMap<String, Tensor> = load(&path).unwrap().into_iter().collect();
        let reference = candle_core::safetensors::load(fixture("digits_eval.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(
            loaded["inputs"].to_vec2::<f32>().unwrap(),
            reference["inputs"].to_vec2::<f32>().unwrap()
        );
        assert_eq!(
            loaded["labels"].to_vec1::<i64>().unwrap(),
            reference["labels"].to_vec1::<i64>().unwrap()
        );
    }

    #[test]
    fn orders_byte_orders_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.npz");
        // Fortran order: memory 1..6 is the 2x3 array [[1,3,5],[2,4,6]].
        let f64s: Vec<u8> = (1..=6).flat_map(|v| (v as f64).to_le_bytes()).collect();
        let big: Vec<u8> = [7i32, -8].iter().flat_map(|v| v.to_be_bytes()).collect();
        let halves: Vec<u8> = [half::f16::from_f32(1.5)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let entries = [
            ("fortran.npy", npy("<f8", true, "(2, 3)", &f64s)),
            ("big.npy", npy(">i4", false, "(2,)", &big)),
            ("flags.npy", npy("|b1", false, "(3,)", &[1, 0, 1])),
            ("small.npy", npy("|i1", false, "(2,)", &[0xff, 5])),
            ("half.npy", npy("<f2", false, "()", &halves)),
            ("empty.npy", npy("<f4", false, "(0, 4)", &[])),
            ("words.npy", npy("<U3", false, "(1,)", &[0; 12])),
            ("objects.npy", npy("|O", false, "(1,)", b"\x80\x02N.")),
            ("notes.txt", b"ignored".to_vec()),
        ];
        for deflate in [false, true] {
            write_npz(&path, &entries, deflate);
            let scan = scan(&path).unwrap();
            let dtypes: Vec<(&str, &str)> = scan
                .tensors
                .iter()
                .map(|t| (t.name.as_str(), t.dtype.as_str()))
                .collect();
            assert_eq!(
                dtypes,
                [
                    ("fortran", "f64"),
                    ("big", "i32"),
                    ("flags", "bool"),
                    ("small", "i8"),
                    ("half", "f16"),
                    ("empty", "f32"),
                    ("words", "str"),
                    ("objects", "object")
                ]
            );
            let loaded: HashMap<String, Tensor> = load(&path).unwrap().into_iter().collect();
            assert_eq!(loaded.len(), 6, "strings and objects are skipped");
            assert_eq!(
                loaded["fortran"].to_vec2::<f64>().unwrap(),
                vec![vec![1., 3., 5.], vec![2., 4., 6.]]
            );
            assert_eq!(loaded["big"].to_vec1::<i32>().unwrap(), vec![7, -8]);
            assert_eq!(loaded["flags"].to_vec1::<u8>().unwrap(), vec![1, 0, 1]);
            assert_eq!(loaded["small"].to_vec1::<i16>().unwrap(), vec![-1, 5]);
            assert_eq!(
                loaded["half"].to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap(),
                1.5
            );
            assert_eq!(loaded["empty"].dims(), &[0, 4]);
        }
    }

    #[test]
    fn garbage_and_truncated_archives_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.npz");
        std::fs::write(&path, b"not a zip").unwrap();
        let err = scan(&path).unwrap_err();
        assert!(err.to_string().contains("junk.npz"), "{err}");
        assert!(malformed_reason(err).contains("zip"));
        let bytes = std::fs::read(fixture("digits_eval.npz")).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        malformed_reason(scan(&path).unwrap_err());
        malformed_reason(load(&path).unwrap_err());
    }

    #[test]
    fn bad_npy_entries_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npz");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x93NUMPX\x01\x00\x10\x00".to_vec(), "magic"),
            (b"\x93NUMPY\x01".to_vec(), "truncated"),
            (b"\x93NUMPY\x09\x00\x10\x00".to_vec(), "version"),
            (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f".to_vec(), "large"),
            (b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4'".to_vec(), "truncated"),
            (npy("<f4", false, "(2,, 3)", &[0; 24]), "bad npy header"),
            (npy("<f4", false, "(-2,)", &[]), "negative"),
            (
                npy("<f4", false, "[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]", &[]),
                "deep",
            ),
            (
                npy_with_header(
                    "{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (2,)}",
                    &[0; 8],
                ),
                "unexpected character `_`",
            ),
            (npy("<f4", false, "(2, 3)", &[0; 12]), "needs 24 bytes"),
            (npy("<f8", false, "(4611686018427387904, 4)", &[]), "absurd"),
        ];
        for (entry, expect) in cases {
            write_npz(&path, &[("x.npy", entry)], false);
            let reason = malformed_reason(scan(&path).unwrap_err());
            assert!(reason.contains("`x`") && reason.contains(expect), "{expect}: {reason}");
            malformed_reason(load(&path).unwrap_err());
        }
    }

    #[test]
    fn header_literal_parser() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (500, 64), }   \n").unwrap();
        assert_eq!(h.shape, vec![500, 64]);
        assert_eq!(h.descr, Py::Str("<f4".into()));
        let h = parse_header("{\"descr\": \"|u1\", \"shape\": (), \"fortran_order\": True}").unwrap();
        assert!(h.fortran_order && h.shape.is_empty());
        let h =
            parse_header("{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (3L,)}").unwrap();
        assert_eq!(h.shape, vec![3]);
        assert_eq!(parse_descr(&h.descr).0.name(), "structured");
        for bad in [
            "",
            "{",
            "{'descr': '<f4'",
            "{'shape': (1,)}",
            "{'descr': 'f4', 'shape': 5}",
            "[1, 2]",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
