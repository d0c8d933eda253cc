//! A request checked on the wire, before prost decodes it.
//!
//! Decoding is where hostile input costs memory: two bytes of an empty
//! repeated entry become a whole struct, so a few kilobytes of gzip can
//! unpack into millions of them. [`check`] reads the encoded message once,
//! streaming (through a decompressor if need be) and holding nothing but
//! its position, and refuses it when it is larger than the method takes,
//! when a repeated or map field holds more entries than the contract allows
//! (`(rapport.api.v1.max_items)`), or when decoding it would take more
//! memory than its budget, estimated from the shapes of the messages.
//! [`field_bytes`] reads one top-level field the same way, for the gateway,
//! which limits public calls by a field's value.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::contract::max_items;

/// What one request may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Bytes of the encoded message, after decompression.
    pub max_bytes: u64,
    /// Estimated bytes of memory its decoded form may take.
    pub max_decoded_bytes: u64,
}

/// Nesting deeper than this is refused (prost's own recursion limit).
const MAX_DEPTH: usize = 100;

/// Why a request was refused before decoding: the field that is over (or
/// malformed), and what a caller should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub description: String,
    /// The request is not a valid encoding (rather than too large).
    pub malformed: bool,
}

/// The gRPC frame header: a compression flag and a four-byte length.
pub const FRAME_HEADER: usize = 5;

/// The one message of a unary request body (one whole gRPC frame), to read
/// on the wire: through the decompressor when it came gzipped. `None` for
/// a body that is not one whole frame, or in another encoding: tonic
/// refuses those itself.
pub fn unary_message(body: &[u8], gzip: bool) -> Option<Box<dyn BufRead + '_>> {
    let (header, message) = body.split_at_checked(FRAME_HEADER)?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length != message.len() {
        return None;
    }
    match header[0] {
        0 => Some(Box::new(message)),
        1 if gzip => Some(Box::new(BufReader::new(flate2::bufread::GzDecoder::new(
            message,
        )))),
        _ => None,
    }
}

/// The bytes of top-level field `number` of the message in `input` (its
/// last occurrence, as decoding keeps it), reading no more than
/// `max_bytes` of the message; `None` when the field is absent or not
/// length-delimited.
pub fn field_bytes(
    input: impl BufRead,
    number: u32,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, Refusal> {
    let mut scanner = Scanner {
        input,
        limits: WireLimits {
            max_bytes,
            max_decoded_bytes: max_bytes,
        },
        read: 0,
        spent: 0,
        costs: HashMap::new(),
    };
    let mut found = None;
    while !scanner.at_end("")? {
        let key = scanner.varint("")?;
        match key & 7 {
            0 => {
                scanner.varint("")?;
            }
            1 => scanner.skip(8, "")?,
            5 => scanner.skip(4, "")?,
            2 => {
                let len = scanner.varint("")?;
                if key >> 3 == u64::from(number) {
                    found = Some(scanner.bytes(len)?);
                } else {
                    scanner.skip(len, "")?;
                }
            }
            _ => return Err(malformed("")),
        }
    }
    Ok(found)
}

/// Reads the message `descriptor` describes from `input` to its end and
/// checks it against `limits` and the contract's caps.
pub fn check(
    input: impl BufRead,
    descriptor: &MessageDescriptor,
    limits: WireLimits,
) -> Result<(), Refusal> {
    let mut scanner = Scanner {
        input,
        limits,
        read: 0,
        spent: 0,
        costs: HashMap::new(),
    };
    scanner.message(descriptor, None, "", 0)
}

struct Scanner<R> {
    input: R,
    limits: WireLimits,
    /// Bytes read so far.
    read: u64,
    /// Estimated bytes of memory decoding takes so far.
    spent: u64,
    /// The in-memory size of each message type, as far as computed.
    costs: HashMap<String, u64>,
}

/// The in-memory size of a scalar, a string's or a list's header, and an
/// optional field's tag: rough, as prost lays them out on 64-bit targets.
const WORD: u64 = 8;
const HEADER: u64 = 24;

impl<R: BufRead> Scanner<R> {
    /// Reads one message: to `len` bytes, or to the end of input at the top.
    fn message(
        &mut self,
        descriptor: &MessageDescriptor,
        len: Option<u64>,
        path: &str,
        depth: usize,
    ) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(refusal(path, "is nested too deeply"));
        }
        let cost = self.cost(descriptor);
        self.charge(cost, path)?;
        let end = len.map(|len| self.read + len);
        let mut counts: HashMap<u32, usize> = HashMap::new();
        loop {
            match end {
                Some(end) if self.read == end => return Ok(()),
                Some(end) if self.read > end => return Err(malformed(path)),
                Some(_) => {}
                None if self.at_end(path)? => return Ok(()),
                None => {}
            }
            let key = self.varint(path)?;
            let number = u32::try_from(key >> 3).map_err(|_| malformed(path))?;
            let field = descriptor.get_field(number);
            let field_path = field.as_ref().map_or_else(String::new, |field| {
                if path.is_empty() {
                    field.name().to_owned()
                } else {
                    format!("{path}.{}", field.name())
                }
            });
            let index = match &field {
                Some(field) if field.is_list() || field.is_map() => {
                    let count = counts.entry(number).or_default();
                    *count += 1;
                    if let Some(cap) = max_items(field)
                        && *count > cap
                    {
                        return Err(refusal(
                            &field_path,
                            &format!("holds more than {cap} entries"),
                        ));
                    }
                    Some(*count - 1)
                }
                _ => None,
            };
            let element_path = match index {
                Some(i) if !field.as_ref().is_some_and(FieldDescriptor::is_map) => {
                    format!("{field_path}[{i}]")
                }
                _ => field_path.clone(),
            };
            match key & 7 {
                0 => {
                    self.varint(path)?;
                    self.charge_element(&field, index, &field_path)?;
                }
                1 => {
                    self.skip(8, path)?;
                    self.charge_element(&field, index, &field_path)?;
                }
                5 => {
                    self.skip(4, path)?;
                    self.charge_element(&field, index, &field_path)?;
                }
                2 => {
                    let len = self.varint(path)?;
                    match field.as_ref().map(FieldDescriptor::kind) {
                        Some(Kind::Message(child)) => {
                            self.message(&child, Some(len), &element_path, depth + 1)?;
                        }
                        Some(Kind::String | Kind::Bytes) => {
                            let header = if index.is_some() { HEADER } else { 0 };
                            self.charge(header + len, &field_path)?;
                            self.skip(len, path)?;
                        }
                        // A packed list of scalars: at most one per byte.
                        Some(_) => {
                            self.charge(len.saturating_mul(WORD), &field_path)?;
                            self.skip(len, path)?;
                        }
                        // Unknown fields are dropped by prost: no memory.
                        None => self.skip(len, path)?,
                    }
                }
                _ => return Err(malformed(path)),
            }
        }
    }

    /// An unpacked scalar entry of a list takes a word.
    fn charge_element(
        &mut self,
        field: &Option<FieldDescriptor>,
        index: Option<usize>,
        path: &str,
    ) -> Result<(), Refusal> {
        if field.is_some() && index.is_some() {
            self.charge(WORD, path)?;
        }
        Ok(())
    }

    fn charge(&mut self, bytes: u64, path: &str) -> Result<(), Refusal> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > self.limits.max_decoded_bytes {
            return Err(refusal(
                path,
                &format!(
                    "makes the request take more than {} KiB of memory to decode",
                    self.limits.max_decoded_bytes / 1024
                ),
            ));
        }
        Ok(())
    }

    /// The in-memory size of a message of this type, nested messages
    /// included (a message that contains itself is boxed: a word).
    fn cost(&mut self, descriptor: &MessageDescriptor) -> u64 {
        let mut visiting = Vec::new();
        self.cost_of(descriptor, &mut visiting)
    }

    fn cost_of(&mut self, descriptor: &MessageDescriptor, visiting: &mut Vec<String>) -> u64 {
        if let Some(cost) = self.costs.get(descriptor.full_name()) {
            return *cost;
        }
        if visiting.iter().any(|name| name == descriptor.full_name()) {
            return WORD;
        }
        visiting.push(descriptor.full_name().to_owned());
        let mut oneofs: HashMap<String, u64> = HashMap::new();
        let mut total = 0;
        for field in descriptor.fields() {
            let slot = if field.is_list() || field.is_map() {
                HEADER
            } else {
                match field.kind() {
                    Kind::String | Kind::Bytes => HEADER,
                    Kind::Message(child) => WORD + self.cost_of(&child, visiting),
                    _ => WORD,
                }
            };
            match field.containing_oneof() {
                Some(oneof) => {
                    let widest = oneofs.entry(oneof.name().to_owned()).or_default();
                    *widest = (*widest).max(slot);
                }
                None => total += slot,
            }
        }
        total += oneofs.values().map(|widest| widest + WORD).sum::<u64>();
        visiting.pop();
        self.costs.insert(descriptor.full_name().to_owned(), total);
        total
    }

    fn at_end(&mut self, path: &str) -> Result<bool, Refusal> {
        Ok(self
            .input
            .fill_buf()
            .map_err(|_| malformed(path))?
            .is_empty())
    }

    fn byte(&mut self, path: &str) -> Result<u8, Refusal> {
        let buffer = self.input.fill_buf().map_err(|_| malformed(path))?;
        let Some(&byte) = buffer.first() else {
            return Err(malformed(path));
        };
        self.input.consume(1);
        self.advance(1)?;
        Ok(byte)
    }

    fn varint(&mut self, path: &str) -> Result<u64, Refusal> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(path)?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed(path))
    }

    /// The next `len` bytes.
    fn bytes(&mut self, len: u64) -> Result<Vec<u8>, Refusal> {
        // Checked against the limit before anything is held.
        if self.read.saturating_add(len) > self.limits.max_bytes {
            return Err(too_large(self.limits.max_bytes));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or_default());
        while (bytes.len() as u64) < len {
            let buffer = self.input.fill_buf().map_err(|_| malformed(""))?;
            if buffer.is_empty() {
                return Err(malformed(""));
            }
            let step = buffer
                .len()
                .min(usize::try_from(len).unwrap_or(usize::MAX) - bytes.len());
            bytes.extend_from_slice(&buffer[..step]);
            self.input.consume(step);
            self.advance(step as u64)?;
        }
        Ok(bytes)
    }

    fn skip(&mut self, mut len: u64, path: &str) -> Result<(), Refusal> {
        while len > 0 {
            let buffer = self.input.fill_buf().map_err(|_| malformed(path))?;
            if buffer.is_empty() {
                return Err(malformed(path));
            }
            let step = buffer.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            self.input.consume(step);
            self.advance(step as u64)?;
            len -= step as u64;
        }
        Ok(())
    }

    fn advance(&mut self, bytes: u64) -> Result<(), Refusal> {
        self.read += bytes;
        if self.read > self.limits.max_bytes {
            return Err(too_large(self.limits.max_bytes));
        }
        Ok(())
    }
}

fn refusal(field: &str, description: &str) -> Refusal {
    Refusal {
        field: if field.is_empty() {
            "request".to_owned()
        } else {
            field.to_owned()
        },
        description: description.to_owned(),
        malformed: false,
    }
}

fn too_large(max_bytes: u64) -> Refusal {
    refusal(
        "",
        &format!(
            "the request is larger than the {} KiB this method takes",
            max_bytes / 1024
        ),
    )
}

fn malformed(path: &str) -> Refusal {
    Refusal {
        malformed: true,
        ..refusal(path, "is not a valid protobuf encoding")
    }
}

#[cfg(test)]
mod tests;
