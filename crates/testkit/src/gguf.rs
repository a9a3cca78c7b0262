//! A small GGUF v3 writer: typed metadata and F32/F16/Q8_0 tensors.
//!
//! It writes only what the generated model pairs need. Metadata keys and
//! tensors are written in insertion order, so the same calls always give the
//! same bytes. Tensors are either held in memory ([`GgufWriter::add_tensor_f32`]
//! and friends) or streamed, produced one at a time while the file is written
//! ([`GgufWriter::write_streamed`]), so that a file of hundreds of MB is never
//! held whole in memory.
//!
//! ```
//! use smolvlm_testkit::gguf::GgufWriter;
//!
//! let mut gguf = GgufWriter::new();
//! gguf.add_string("general.architecture", "llama");
//! gguf.add_u32("llama.block_count", 2);
//! gguf.add_tensor_f32("output_norm.weight", &[4], vec![1.0; 4]);
//! let mut bytes = Vec::new();
//! gguf.write_to(&mut bytes).unwrap();
//! assert_eq!(&bytes[..4], b"GGUF");
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::quant::{quantize_q8_0, Q8_0_BLOCK, Q8_0_BLOCK_BYTES};

/// `"GGUF"` read as a little-endian u32.
const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// GGUF's default alignment; llama.cpp assumes it when `general.alignment` is absent.
pub const ALIGNMENT: usize = 32;

// GGUF value type tags (gguf.h `enum gguf_type`).
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

// ggml tensor type tags (ggml.h `enum ggml_type`).
const GGML_TYPE_F32: u32 = 0;
const GGML_TYPE_F16: u32 = 1;
const GGML_TYPE_Q8_0: u32 = 8;

/// One typed metadata value.
///
/// The variants are exactly the GGUF types llama.cpp's loaders expect for the
/// keys of a SmolVLM pair; they check the stored type, so a `u32` key written as
/// `i32` fails to load.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    /// GGUF `UINT32`.
    U32(u32),
    /// GGUF `INT32`.
    I32(i32),
    /// GGUF `FLOAT32`.
    F32(f32),
    /// GGUF `BOOL`.
    Bool(bool),
    /// GGUF `STRING`.
    String(String),
    /// GGUF `ARRAY` of `STRING`.
    StringArray(Vec<String>),
    /// GGUF `ARRAY` of `INT32`.
    I32Array(Vec<i32>),
    /// GGUF `ARRAY` of `FLOAT32`.
    F32Array(Vec<f32>),
}

/// How a tensor's elements are stored: the ggml types this writer supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    /// 32-bit floats (ggml type 0).
    F32,
    /// IEEE half floats (ggml type 1).
    F16,
    /// Blocks of 32 signed bytes sharing a half-float scale (ggml type 8); see
    /// [`crate::quant`].
    Q8_0,
}

impl TensorType {
    fn ggml_type(self) -> u32 {
        match self {
            TensorType::F32 => GGML_TYPE_F32,
            TensorType::F16 => GGML_TYPE_F16,
            TensorType::Q8_0 => GGML_TYPE_Q8_0,
        }
    }

    /// Elements per storage block; a tensor's `ne[0]` must be a multiple of it.
    #[must_use]
    pub fn block_len(self) -> u64 {
        match self {
            TensorType::F32 | TensorType::F16 => 1,
            TensorType::Q8_0 => Q8_0_BLOCK as u64,
        }
    }

    /// Bytes that `n_elements` elements take (a whole number of blocks).
    #[must_use]
    pub fn byte_len(self, n_elements: u64) -> u64 {
        match self {
            TensorType::F32 => n_elements * 4,
            TensorType::F16 => n_elements * 2,
            TensorType::Q8_0 => n_elements / Q8_0_BLOCK as u64 * Q8_0_BLOCK_BYTES as u64,
        }
    }
}

/// The stored element data of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// IEEE half floats, as raw bits.
    F16(Vec<u16>),
    /// `Q8_0` blocks, as raw bytes ([`crate::quant::Q8_0_BLOCK_BYTES`] per 32
    /// elements).
    Q8_0(Vec<u8>),
}

impl TensorData {
    /// The storage type of this data.
    #[must_use]
    pub fn tensor_type(&self) -> TensorType {
        match self {
            TensorData::F32(_) => TensorType::F32,
            TensorData::F16(_) => TensorType::F16,
            TensorData::Q8_0(_) => TensorType::Q8_0,
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len() * 4,
            TensorData::F16(v) => v.len() * 2,
            TensorData::Q8_0(v) => v.len(),
        }
    }

    /// What the data holds, for error messages.
    fn describe(&self) -> String {
        match self {
            TensorData::F32(v) => format!("{} values", v.len()),
            TensorData::F16(v) => format!("{} values", v.len()),
            TensorData::Q8_0(v) => format!("{} bytes of Q8_0 blocks", v.len()),
        }
    }
}

/// A tensor's entry in the file header: its name, dimensions and storage type.
/// Its data comes later, from [`GgufWriter::write_streamed`]'s callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order (fastest first).
    pub ne: Vec<u64>,
    /// Storage type.
    pub ty: TensorType,
}

impl TensorInfo {
    /// A header entry for a tensor named `name` of dims `ne`, stored as `ty`.
    #[must_use]
    pub fn new(name: &str, ne: &[u64], ty: TensorType) -> Self {
        Self {
            name: name.to_owned(),
            ne: ne.to_vec(),
            ty,
        }
    }

    /// Number of elements: the product of the dimensions.
    #[must_use]
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Bytes of data the tensor takes in the file, before alignment padding.
    #[must_use]
    pub fn byte_len(&self) -> u64 {
        self.ty.byte_len(self.n_elements())
    }
}

/// A tensor waiting to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `ne[0]` varies fastest (the reverse of a
    /// PyTorch shape).
    pub ne: Vec<u64>,
    /// Element data, `ne.iter().product()` elements.
    pub data: TensorData,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<Tensor>,
}

impl GgufWriter {
    /// An empty file: no metadata, no tensors.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata key of any type.
    pub fn add(&mut self, key: &str, value: MetadataValue) -> &mut Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    /// Adds a `UINT32` key.
    pub fn add_u32(&mut self, key: &str, value: u32) -> &mut Self {
        self.add(key, MetadataValue::U32(value))
    }

    /// Adds an `INT32` key.
    pub fn add_i32(&mut self, key: &str, value: i32) -> &mut Self {
        self.add(key, MetadataValue::I32(value))
    }

    /// Adds a `FLOAT32` key.
    pub fn add_f32(&mut self, key: &str, value: f32) -> &mut Self {
        self.add(key, MetadataValue::F32(value))
    }

    /// Adds a `BOOL` key.
    pub fn add_bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.add(key, MetadataValue::Bool(value))
    }

    /// Adds a `STRING` key.
    pub fn add_string(&mut self, key: &str, value: &str) -> &mut Self {
        self.add(key, MetadataValue::String(value.to_owned()))
    }

    /// Adds an array-of-`STRING` key.
    pub fn add_string_array<S: AsRef<str>>(&mut self, key: &str, values: &[S]) -> &mut Self {
        let values = values.iter().map(|s| s.as_ref().to_owned()).collect();
        self.add(key, MetadataValue::StringArray(values))
    }

    /// Adds an array-of-`INT32` key.
    pub fn add_i32_array(&mut self, key: &str, values: &[i32]) -> &mut Self {
        self.add(key, MetadataValue::I32Array(values.to_vec()))
    }

    /// Adds an array-of-`FLOAT32` key.
    pub fn add_f32_array(&mut self, key: &str, values: &[f32]) -> &mut Self {
        self.add(key, MetadataValue::F32Array(values.to_vec()))
    }

    /// Adds an F32 tensor. `ne` is in ggml order (fastest dimension first).
    pub fn add_tensor_f32(&mut self, name: &str, ne: &[u64], data: Vec<f32>) -> &mut Self {
        self.tensors.push(Tensor {
            name: name.to_owned(),
            ne: ne.to_vec(),
            data: TensorData::F32(data),
        });
        self
    }

    /// Adds an F16 tensor, rounding each value to the nearest half float.
    pub fn add_tensor_f16(&mut self, name: &str, ne: &[u64], data: &[f32]) -> &mut Self {
        self.tensors.push(Tensor {
            name: name.to_owned(),
            ne: ne.to_vec(),
            data: TensorData::F16(data.iter().map(|&x| f32_to_f16_bits(x)).collect()),
        });
        self
    }

    /// Adds a `Q8_0` tensor, quantizing `data` as ggml does
    /// ([`crate::quant::quantize_q8_0`]). `ne[0]` must be a multiple of 32.
    pub fn add_tensor_q8_0(&mut self, name: &str, ne: &[u64], data: &[f32]) -> &mut Self {
        self.tensors.push(Tensor {
            name: name.to_owned(),
            ne: ne.to_vec(),
            data: TensorData::Q8_0(quantize_q8_0(data)),
        });
        self
    }

    /// The tensors added so far, in file order.
    #[must_use]
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// The metadata added so far, in file order.
    #[must_use]
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    /// Writes the file to `path`, replacing it.
    ///
    /// # Errors
    ///
    /// Any I/O error, and `InvalidInput` if the content is inconsistent (see
    /// [`GgufWriter::write_to`]).
    pub fn write_to_path(&self, path: &Path) -> io::Result<()> {
        self.validate(&[])?;
        let mut out = BufWriter::new(File::create(path)?);
        self.write_to(&mut out)?;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()
    }

    /// Writes the file to `out`.
    ///
    /// # Errors
    ///
    /// Any I/O error from `out`, and `InvalidInput` when a key or tensor name is
    /// repeated or a tensor's data length does not match its dimensions.
    pub fn write_to<W: Write>(&self, out: W) -> io::Result<()> {
        self.write_streamed(&[], out, |_, _, _| Ok(()))
    }

    /// Writes the file to `out`, with the tensors held in memory followed by
    /// `streamed`, whose bytes `fill(index, info, buf)` appends to an empty
    /// `buf` one tensor at a time, in order. Only one streamed tensor's data is
    /// in memory at once.
    ///
    /// # Errors
    ///
    /// Any I/O error from `out` or `fill`; `InvalidInput` when a key or tensor
    /// name is repeated, a tensor's dimensions do not fit its type (`ne[0]` a
    /// multiple of 32 for `Q8_0`) or its data; `InvalidData` when `fill`
    /// produces a byte count other than [`TensorInfo::byte_len`].
    pub fn write_streamed<W, F>(
        &self,
        streamed: &[TensorInfo],
        mut out: W,
        mut fill: F,
    ) -> io::Result<()>
    where
        W: Write,
        F: FnMut(usize, &TensorInfo, &mut Vec<u8>) -> io::Result<()>,
    {
        self.validate(streamed)?;
        self.write_header(&mut out, streamed)?;

        let mut data_written = 0usize;
        for tensor in &self.tensors {
            match &tensor.data {
                TensorData::F32(values) => {
                    for v in values {
                        out.write_all(&v.to_le_bytes())?;
                    }
                }
                TensorData::F16(values) => {
                    for v in values {
                        out.write_all(&v.to_le_bytes())?;
                    }
                }
                TensorData::Q8_0(blocks) => out.write_all(blocks)?,
            }
            data_written += tensor.data.byte_len();
            data_written += write_padding(&mut out, data_written)?;
        }
        let mut buf = Vec::new();
        for (i, info) in streamed.iter().enumerate() {
            buf.clear();
            fill(i, info, &mut buf)?;
            if buf.len() as u64 != info.byte_len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "streamed GGUF tensor '{}' ({:?} {:?}) got {} bytes, expected {}",
                        info.name,
                        info.ty,
                        info.ne,
                        buf.len(),
                        info.byte_len()
                    ),
                ));
            }
            out.write_all(&buf)?;
            data_written += buf.len();
            data_written += write_padding(&mut out, data_written)?;
        }
        out.flush()
    }

    /// Size in bytes of the file [`GgufWriter::write_streamed`] writes with
    /// these `streamed` tensors (`&[]` for [`GgufWriter::write_to`]), computed
    /// without producing any tensor data.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for the inconsistencies `write_streamed` rejects.
    pub fn file_len(&self, streamed: &[TensorInfo]) -> io::Result<u64> {
        self.validate(streamed)?;
        let header = self.write_header(&mut io::sink(), streamed)? as u64;
        let data: u64 = self
            .header_entries(streamed)
            .map(|(_, ne, ty)| align(ty.byte_len(ne.iter().product()) as usize) as u64)
            .sum();
        Ok(header + data)
    }

    /// Name, dims and type of every tensor: in-memory ones, then `streamed`.
    fn header_entries<'a>(
        &'a self,
        streamed: &'a [TensorInfo],
    ) -> impl Iterator<Item = (&'a str, &'a [u64], TensorType)> {
        let held = self
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.ne.as_slice(), t.data.tensor_type()));
        held.chain(
            streamed
                .iter()
                .map(|t| (t.name.as_str(), t.ne.as_slice(), t.ty)),
        )
    }

    /// Writes everything before the tensor data, padding included; returns
    /// its length.
    fn write_header<W: Write>(&self, out: &mut W, streamed: &[TensorInfo]) -> io::Result<usize> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        write_u64(out, (self.tensors.len() + streamed.len()) as u64)?;
        write_u64(out, self.metadata.len() as u64)?;
        let mut written = 4 + 4 + 8 + 8;

        for (key, value) in &self.metadata {
            written += write_string(out, key)?;
            written += write_value(out, value)?;
        }

        let mut offset = 0usize;
        for (name, ne, ty) in self.header_entries(streamed) {
            written += write_string(out, name)?;
            out.write_all(&(ne.len() as u32).to_le_bytes())?;
            for &dim in ne {
                write_u64(out, dim)?;
            }
            out.write_all(&ty.ggml_type().to_le_bytes())?;
            write_u64(out, offset as u64)?;
            written += 4 + 8 * ne.len() + 4 + 8;
            offset = align(offset + ty.byte_len(ne.iter().product()) as usize);
        }

        written += write_padding(out, written)?;
        Ok(written)
    }

    fn validate(&self, streamed: &[TensorInfo]) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        for (i, (key, _)) in self.metadata.iter().enumerate() {
            if self.metadata[..i].iter().any(|(k, _)| k == key) {
                return invalid(format!("GGUF metadata key '{key}' is set twice"));
            }
        }
        let entries: Vec<_> = self.header_entries(streamed).collect();
        for (i, &(name, ne, ty)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|&(n, _, _)| n == name) {
                return invalid(format!("GGUF tensor '{name}' is added twice"));
            }
            if ne.is_empty() || ne.len() > 4 || !ne[0].is_multiple_of(ty.block_len()) {
                return invalid(format!(
                    "GGUF tensor '{name}' has dims {ne:?}: 1 to 4 dims are allowed, and {ty:?} \
                     needs ne[0] to be a multiple of {}",
                    ty.block_len()
                ));
            }
        }
        for tensor in &self.tensors {
            let expected: u64 = tensor.ne.iter().product();
            if tensor.data.tensor_type().byte_len(expected) != tensor.data.byte_len() as u64 {
                return invalid(format!(
                    "GGUF tensor '{}' has dims {:?} ({expected} elements) but {}",
                    tensor.name,
                    tensor.ne,
                    tensor.data.describe()
                ));
            }
        }
        Ok(())
    }
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn write_padding<W: Write>(out: &mut W, written: usize) -> io::Result<usize> {
    let pad = align(written) - written;
    out.write_all(&[0u8; ALIGNMENT][..pad])?;
    Ok(pad)
}

fn write_u64<W: Write>(out: &mut W, v: u64) -> io::Result<()> {
    out.write_all(&v.to_le_bytes())
}

/// Writes a GGUF string (u64 length + bytes, no terminator); returns bytes written.
fn write_string<W: Write>(out: &mut W, s: &str) -> io::Result<usize> {
    write_u64(out, s.len() as u64)?;
    out.write_all(s.as_bytes())?;
    Ok(8 + s.len())
}

/// Writes a value's type tag and payload; returns bytes written.
fn write_value<W: Write>(out: &mut W, value: &MetadataValue) -> io::Result<usize> {
    let tag = |out: &mut W, t: u32| out.write_all(&t.to_le_bytes());
    let array_header = |out: &mut W, t: u32, n: usize| -> io::Result<usize> {
        tag(out, TYPE_ARRAY)?;
        tag(out, t)?;
        write_u64(out, n as u64)?;
        Ok(4 + 4 + 8)
    };
    match value {
        MetadataValue::U32(v) => {
            tag(out, TYPE_U32)?;
            out.write_all(&v.to_le_bytes())?;
            Ok(8)
        }
        MetadataValue::I32(v) => {
            tag(out, TYPE_I32)?;
            out.write_all(&v.to_le_bytes())?;
            Ok(8)
        }
        MetadataValue::F32(v) => {
            tag(out, TYPE_F32)?;
            out.write_all(&v.to_le_bytes())?;
            Ok(8)
        }
        MetadataValue::Bool(v) => {
            tag(out, TYPE_BOOL)?;
            out.write_all(&[u8::from(*v)])?;
            Ok(5)
        }
        MetadataValue::String(s) => {
            tag(out, TYPE_STRING)?;
            Ok(4 + write_string(out, s)?)
        }
        MetadataValue::StringArray(values) => {
            let mut n = array_header(out, TYPE_STRING, values.len())?;
            for s in values {
                n += write_string(out, s)?;
            }
            Ok(n)
        }
        MetadataValue::I32Array(values) => {
            let n = array_header(out, TYPE_I32, values.len())?;
            for v in values {
                out.write_all(&v.to_le_bytes())?;
            }
            Ok(n + 4 * values.len())
        }
        MetadataValue::F32Array(values) => {
            let n = array_header(out, TYPE_F32, values.len())?;
            for v in values {
                out.write_all(&v.to_le_bytes())?;
            }
            Ok(n + 4 * values.len())
        }
    }
}

/// Converts an `f32` to IEEE 754 half-precision bits, rounding to nearest even.
///
/// Written out here rather than pulling in the `half` crate for one function.
#[must_use]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x007f_ffff;

    if exp == 0xff {
        // Inf stays Inf; NaN keeps a quiet bit so it stays NaN.
        let nan = if mant == 0 { 0 } else { 0x0200 };
        return sign | 0x7c00 | nan;
    }
    let half_exp = exp - 127 + 15;
    if half_exp >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exp <= 0 {
        // Subnormal half (or zero): shift the implicit-1 mantissa into place.
        if half_exp < -10 {
            return sign;
        }
        let full = mant | 0x0080_0000;
        let shift = (14 - half_exp) as u32;
        let mut half_mant = full >> shift;
        let rem = full & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        if rem > halfway || (rem == halfway && half_mant & 1 == 1) {
            half_mant += 1;
        }
        return sign | half_mant as u16;
    }
    let mut out = ((half_exp as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && out & 1 == 1) {
        // A carry out of the mantissa correctly bumps the exponent (up to Inf).
        out += 1;
    }
    sign | out as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_counts_and_alignment() {
        let mut gguf = GgufWriter::new();
        gguf.add_string("general.architecture", "llama")
            .add_u32("a", 7)
            .add_tensor_f32("t0", &[3], vec![1.0, 2.0, 3.0])
            .add_tensor_f32("t1", &[2, 2], vec![4.0; 4]);
        let mut bytes = Vec::new();
        gguf.write_to(&mut bytes).unwrap();
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 2);
        // Data section: t0 (12 bytes) padded to 32, then t1 (16 bytes) padded to 32.
        assert_eq!(bytes.len() % ALIGNMENT, 0);
        let data_start = bytes.len() - 64;
        assert_eq!(&bytes[data_start..data_start + 4], &1.0f32.to_le_bytes());
        assert_eq!(
            &bytes[data_start + 32..data_start + 36],
            &4.0f32.to_le_bytes()
        );
    }

    #[test]
    fn rejects_wrong_element_count_and_duplicates() {
        let mut gguf = GgufWriter::new();
        gguf.add_tensor_f32("t", &[2, 2], vec![0.0; 3]);
        assert!(gguf.write_to(Vec::new()).is_err());

        let mut gguf = GgufWriter::new();
        gguf.add_u32("k", 1).add_u32("k", 2);
        assert!(gguf.write_to(Vec::new()).is_err());
    }

    #[test]
    fn q8_0_tensor_and_type_sizes() {
        assert_eq!(TensorType::Q8_0.byte_len(64), 68);
        assert_eq!(TensorType::F16.byte_len(64), 128);
        assert_eq!(TensorType::F32.byte_len(64), 256);
        let values: Vec<f32> = (0..64).map(|i| i as f32 - 32.0).collect();
        let mut gguf = GgufWriter::new();
        gguf.add_tensor_q8_0("q", &[32, 2], &values);
        let mut bytes = Vec::new();
        gguf.write_to(&mut bytes).unwrap();
        // Header: name "q", 2 dims, type 8, offset 0; data: 68 bytes padded to 96.
        let info = 24 + 8 + 1 + 4 + 16;
        assert_eq!(
            u32::from_le_bytes(bytes[info..info + 4].try_into().unwrap()),
            8
        );
        assert_eq!(bytes.len(), 96 + 96);
        assert_eq!(&bytes[96..96 + 68], crate::quant::quantize_q8_0(&values));
        assert_eq!(gguf.file_len(&[]).unwrap(), bytes.len() as u64);

        // ne[0] must be a whole number of blocks.
        let mut bad = GgufWriter::new();
        bad.add_tensor_q8_0("q", &[16, 2], &values[..32]);
        let err = bad.write_to(Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn streamed_tensors_match_in_memory_ones() {
        let values: Vec<f32> = (0..40).map(|i| i as f32 * 0.25).collect();
        let mut held = GgufWriter::new();
        held.add_string("general.architecture", "llama")
            .add_tensor_f32("a", &[8], values[..8].to_vec())
            .add_tensor_f32("b", &[8, 4], values[8..].to_vec());
        let mut expected = Vec::new();
        held.write_to(&mut expected).unwrap();

        // The same file with "b" streamed.
        let mut meta = GgufWriter::new();
        meta.add_string("general.architecture", "llama")
            .add_tensor_f32("a", &[8], values[..8].to_vec());
        let streamed = [TensorInfo::new("b", &[8, 4], TensorType::F32)];
        let mut bytes = Vec::new();
        meta.write_streamed(&streamed, &mut bytes, |i, info, buf| {
            assert_eq!((i, info.name.as_str()), (0, "b"));
            buf.extend(values[8..].iter().flat_map(|v| v.to_le_bytes()));
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes, expected);
        assert_eq!(meta.file_len(&streamed).unwrap(), expected.len() as u64);

        // A callback that produces the wrong length is an error.
        let err = meta
            .write_streamed(&streamed, Vec::new(), |_, _, buf| {
                buf.push(0);
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // So is a streamed name that is already held.
        let dup = [TensorInfo::new("a", &[8], TensorType::F32)];
        let err = meta.file_len(&dup).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f32_to_f16_bits(0.0), 0x0000);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_f16_bits(0.5), 0x3800);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(1e6), 0x7c00);
        assert_eq!(f32_to_f16_bits(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16_bits(f32::NAN) & 0x7c00, 0x7c00);
        assert_ne!(f32_to_f16_bits(f32::NAN) & 0x03ff, 0);
        // Smallest subnormal half, 2^-24.
        assert_eq!(f32_to_f16_bits(5.960_464_5e-8), 0x0001);
        // 1 + 2^-11 is halfway between 1 and the next half: ties to even (1.0).
        assert_eq!(f32_to_f16_bits(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(0.1), 0x2e66);
    }
}
