//! A small, defensive GGUF header reader.
//!
//! llama.cpp and clip.cpp abort the process on some malformed or mismatched
//! files, so before any file reaches them we read its metadata and tensor
//! table here, in safe Rust, and check that the data section is complete.
//! Array values are skipped (only their element type and length are kept):
//! the vocabulary alone can hold 150k strings and nothing here needs them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// No single key, string or dimension list in a real model comes near this;
/// a larger length is a corrupt or hostile header.
const MAX_STRING_LEN: u64 = 64 << 20;

/// What is wrong with a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with the GGUF magic.
    #[error("it does not start with the GGUF magic (found {found:?})")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// The GGUF version is not 2 or 3.
    #[error("GGUF version {0} is not supported (2 or 3 are)")]
    Version(u32),
    /// The header ends early or declares impossible sizes.
    #[error("its header is truncated or corrupt ({0})")]
    Corrupt(&'static str),
    /// The tensor data ends before the header says it should.
    #[error("it is truncated: tensor data needs {needed} bytes but the file has {actual} (an interrupted download?)")]
    Truncated {
        /// Bytes the tensor table requires.
        needed: u64,
        /// Bytes in the file.
        actual: u64,
    },
    /// A key or tensor the loader requires is absent or unusable.
    #[error("it lacks {0}")]
    Missing(&'static str),
    /// A metadata key has an unexpected type.
    #[error("key '{key}' has the wrong type (expected {expected})")]
    KeyType {
        /// The key.
        key: String,
        /// The type expected.
        expected: &'static str,
    },
}

/// One metadata value. Arrays keep only their element type and length.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array of `len` elements of GGUF type `elem_type`.
    Array {
        /// The GGUF type code of the elements.
        elem_type: u32,
        /// Number of elements.
        len: u64,
    },
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Dimensions in ggml order (`ne[0]` first).
    pub dims: Vec<u64>,
    /// ggml type code.
    pub ggml_type: u32,
    /// Offset from the start of the data section.
    pub offset: u64,
}

/// The header of a GGUF file: its metadata and tensor table.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    metadata: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
}

impl GgufHeader {
    /// Reads and checks the header of the file at `path`, including that the
    /// file is long enough to hold every tensor the table declares.
    ///
    /// # Errors
    ///
    /// [`GgufError`] naming what is wrong.
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut reader = Reader {
            inner: BufReader::new(file),
            pos: 0,
            len: file_len,
        };
        let header = Self::parse(&mut reader)?;
        let data_start = align(reader.pos, header.alignment()).ok_or(GgufError::Corrupt(
            "the tensor data would start past any file size",
        ))?;
        let mut needed = data_start;
        for t in header.tensors.values() {
            let bytes = tensor_bytes(t).ok_or(GgufError::Corrupt(
                "a tensor's type is unknown to ggml or its size overflows",
            ))?;
            let end = data_start
                .checked_add(t.offset)
                .and_then(|start| start.checked_add(bytes))
                .ok_or(GgufError::Corrupt("a tensor's offset and size overflow"))?;
            needed = needed.max(end);
        }
        if needed > file_len {
            return Err(GgufError::Truncated {
                needed,
                actual: file_len,
            });
        }
        Ok(header)
    }

    fn parse(r: &mut Reader) -> Result<Self, GgufError> {
        let mut magic = [0u8; 4];
        r.bytes(&mut magic)?;
        if &magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        // Each entry takes at least 8 bytes, which bounds the counts by the file size.
        if n_tensors.saturating_add(n_kv).saturating_mul(8) > r.len {
            return Err(GgufError::Corrupt("entry counts exceed the file size"));
        }
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty)?;
            metadata.insert(key, value);
        }
        let mut tensors = HashMap::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims > 8 {
                return Err(GgufError::Corrupt("a tensor has more than 8 dimensions"));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = r.u32()?;
            let offset = r.u64()?;
            tensors.insert(
                name,
                TensorInfo {
                    dims,
                    ggml_type,
                    offset,
                },
            );
        }
        Ok(Self { metadata, tensors })
    }

    fn alignment(&self) -> u64 {
        match self.metadata.get("general.alignment") {
            Some(Value::Uint(a)) if *a > 0 => *a,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// A metadata value by key.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A string value, if the key is present.
    ///
    /// # Errors
    ///
    /// [`GgufError::KeyType`] if the key holds something else.
    pub fn str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(key_type(key, "string")),
        }
    }

    /// An unsigned integer value, if the key is present.
    ///
    /// # Errors
    ///
    /// [`GgufError::KeyType`] if the key holds something else.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Uint(v)) => Ok(Some(*v)),
            Some(Value::Int(v)) if *v >= 0 => Ok(Some(v.unsigned_abs())),
            Some(_) => Err(key_type(key, "unsigned integer")),
        }
    }

    /// A boolean value, if the key is present.
    ///
    /// # Errors
    ///
    /// [`GgufError::KeyType`] if the key holds something else.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(_) => Err(key_type(key, "bool")),
        }
    }

    /// The length of an array value, if the key holds an array.
    #[must_use]
    pub fn array_len(&self, key: &str) -> Option<u64> {
        match self.metadata.get(key) {
            Some(Value::Array { len, .. }) => Some(*len),
            _ => None,
        }
    }

    /// A tensor's table entry by name.
    #[must_use]
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Number of tensors in the table.
    #[must_use]
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }
}

fn key_type(key: &str, expected: &'static str) -> GgufError {
    GgufError::KeyType {
        key: key.to_owned(),
        expected,
    }
}

fn align(pos: u64, alignment: u64) -> Option<u64> {
    pos.div_ceil(alignment.max(1)).checked_mul(alignment.max(1))
}

/// Bytes a tensor occupies: elements rounded up to whole blocks, times the
/// block's size, for every type the vendored ggml can load (`ggml.h`'s
/// `ggml_type`, sizes from `ggml-common.h`). `None` for a type ggml does not
/// know (it would refuse the file) or a size that overflows.
fn tensor_bytes(t: &TensorInfo) -> Option<u64> {
    let elements = t.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    let (block, size) = block_layout(t.ggml_type)?;
    elements.div_ceil(block).checked_mul(size)
}

/// (elements per block, bytes per block) of a ggml type.
fn block_layout(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),       // F32
        1 | 30 => (1, 2),  // F16, BF16
        2 => (32, 18),     // Q4_0
        3 => (32, 20),     // Q4_1
        6 => (32, 22),     // Q5_0
        7 => (32, 24),     // Q5_1
        8 => (32, 34),     // Q8_0
        9 => (32, 36),     // Q8_1
        10 => (256, 84),   // Q2_K
        11 => (256, 110),  // Q3_K
        12 => (256, 144),  // Q4_K
        13 => (256, 176),  // Q5_K
        14 => (256, 210),  // Q6_K
        15 => (256, 292),  // Q8_K
        16 => (256, 66),   // IQ2_XXS
        17 => (256, 74),   // IQ2_XS
        18 => (256, 98),   // IQ3_XXS
        19 => (256, 50),   // IQ1_S
        20 => (32, 18),    // IQ4_NL
        21 => (256, 110),  // IQ3_S
        22 => (256, 82),   // IQ2_S
        23 => (256, 136),  // IQ4_XS
        24 => (1, 1),      // I8
        25 => (1, 2),      // I16
        26 => (1, 4),      // I32
        27 | 28 => (1, 8), // I64, F64
        29 => (256, 56),   // IQ1_M
        34 => (256, 54),   // TQ1_0
        35 => (256, 66),   // TQ2_0
        39 => (32, 17),    // MXFP4
        40 => (64, 36),    // NVFP4
        41 => (128, 18),   // Q1_0
        42 => (64, 18),    // Q2_0
        _ => return None,
    })
}

/// A bounds-checked little-endian reader that tracks its position.
struct Reader {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Reader {
    fn bytes(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => GgufError::Corrupt("the header ends early"),
            _ => GgufError::Io(e),
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), GgufError> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(GgufError::Corrupt("a value runs past the end of the file"));
        }
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        if copied != n {
            return Err(GgufError::Corrupt("the header ends early"));
        }
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.bytes(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > MAX_STRING_LEN || len > self.len.saturating_sub(self.pos) {
            return Err(GgufError::Corrupt("a string length exceeds the file"));
        }
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.bytes(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn value(&mut self, ty: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::Uint(u64::from(self.array::<1>()?[0])),
            1 => Value::Int(i64::from(i8::from_le_bytes(self.array()?))),
            2 => Value::Uint(u64::from(u16::from_le_bytes(self.array()?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.array()?))),
            4 => Value::Uint(u64::from(self.u32()?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.array()?))),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let elem_type = self.u32()?;
                let len = self.u64()?;
                match fixed_size(elem_type) {
                    Some(size) => self.skip(len.saturating_mul(size))?,
                    None if elem_type == 8 => {
                        if len > self.len.saturating_sub(self.pos) / 8 {
                            return Err(GgufError::Corrupt("an array length exceeds the file"));
                        }
                        for _ in 0..len {
                            let n = self.u64()?;
                            self.skip(n)?;
                        }
                    }
                    None => return Err(GgufError::Corrupt("unsupported array element type")),
                }
                Value::Array { elem_type, len }
            }
            10 => Value::Uint(self.u64()?),
            11 => Value::Int(i64::from_le_bytes(self.array()?)),
            12 => Value::Float(f64::from_le_bytes(self.array()?)),
            _ => return Err(GgufError::Corrupt("unknown metadata value type")),
        })
    }
}

/// Byte size of a fixed-size GGUF value type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with no metadata and one tensor of `ggml_type` and
    /// `dims`, whose data section holds `data_len` bytes.
    fn one_tensor_file(ggml_type: u32, dims: &[u64], data_len: usize) -> tempfile_path::Path {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes()); // tensors
        out.extend_from_slice(&0u64.to_le_bytes()); // metadata
        let name = b"t";
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ggml_type.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // offset
        while out.len() % DEFAULT_ALIGNMENT as usize != 0 {
            out.push(0);
        }
        out.resize(out.len() + data_len, 0);
        tempfile_path::write(&out)
    }

    /// A unique temporary file, removed on drop (no tempfile dependency).
    mod tempfile_path {
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct Path(pub std::path::PathBuf);

        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }

        pub fn write(bytes: &[u8]) -> Path {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "smolvlm-gguf-{}-{}.gguf",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, bytes).unwrap();
            Path(path)
        }
    }

    #[test]
    fn every_loadable_type_has_its_ggml_block_size() {
        // Spot checks against ggml-common.h's static_asserts.
        for (ty, layout) in [
            (8, (32, 34)),    // Q8_0: half + 32 int8
            (12, (256, 144)), // Q4_K
            (23, (256, 136)), // IQ4_XS
            (29, (256, 56)),  // IQ1_M
            (34, (256, 54)),  // TQ1_0
            (35, (256, 66)),  // TQ2_0
            (39, (32, 17)),   // MXFP4: e8m0 scale + 16 bytes
        ] {
            assert_eq!(block_layout(ty), Some(layout), "type {ty}");
        }
        // Every code ggml.h defines, none it removed.
        let known: Vec<u32> = (0..=42).filter(|&t| block_layout(t).is_some()).collect();
        let removed = [4, 5, 31, 32, 33, 36, 37, 38];
        assert_eq!(known.len(), 43 - removed.len());
        assert!(removed.iter().all(|t| block_layout(*t).is_none()));
        assert_eq!(block_layout(43), None);
    }

    #[test]
    fn truncated_tensors_of_every_block_type_are_caught() {
        for ty in (0..=42).filter(|&t| block_layout(t).is_some()) {
            let (block, size) = block_layout(ty).unwrap();
            let dims = [block * 4, 3];
            let needed = usize::try_from(12 * size).unwrap();
            let whole = one_tensor_file(ty, &dims, needed);
            assert!(GgufHeader::read(&whole.0).is_ok(), "type {ty}");
            let short = one_tensor_file(ty, &dims, needed - 1);
            assert!(
                matches!(GgufHeader::read(&short.0), Err(GgufError::Truncated { .. })),
                "type {ty}"
            );
        }
    }

    #[test]
    fn unknown_types_and_overflowing_sizes_are_corrupt_not_panics() {
        let unknown = one_tensor_file(200, &[32], 64);
        assert!(matches!(
            GgufHeader::read(&unknown.0),
            Err(GgufError::Corrupt(_))
        ));
        let huge = one_tensor_file(0, &[u64::MAX / 2, 4], 64);
        assert!(matches!(
            GgufHeader::read(&huge.0),
            Err(GgufError::Corrupt(_))
        ));
        assert_eq!(align(u64::MAX - 3, 32), None);
        assert_eq!(align(33, 32), Some(64));
    }
}
