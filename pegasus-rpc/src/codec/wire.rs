//! Thrift binary protocol plumbing shared by every payload type: bounded decoding from a byte
//! slice, encoding into a `BytesMut`, the args and result wrappers of a message body, and a skip
//! that refuses to walk into anything tagged as a struct.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMapIdentifier, TOutputProtocol, TStructIdentifier, TType,
};
use thrift::{ProtocolError, ProtocolErrorKind, TConfiguration};

use super::CodecError;

/// How deep nested containers may go before decoding gives up.
const MAX_DEPTH: usize = 16;

/// A type with a Pegasus wire encoding inside a thrift binary stream.
pub trait ThriftWire: Sized {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self>;
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()>;
}

pub(crate) fn invalid(msg: impl Into<String>) -> thrift::Error {
    thrift::Error::Protocol(ProtocolError::new(
        ProtocolErrorKind::InvalidData,
        msg.into(),
    ))
}

/// Runs `f` over `bytes` with limits that make hostile lengths harmless: no string or container
/// may be longer than the input itself. Returns the value and the number of bytes consumed.
pub fn decode_with<T>(
    bytes: &[u8],
    what: &'static str,
    f: impl FnOnce(&mut dyn TInputProtocol) -> thrift::Result<T>,
) -> Result<(T, usize), CodecError> {
    let config = TConfiguration::builder()
        .max_string_size(Some(bytes.len()))
        .max_container_size(Some(bytes.len()))
        .max_recursion_depth(Some(MAX_DEPTH))
        .build()
        .map_err(|e| CodecError::malformed(what, e))?;
    let mut cursor = bytes;
    let value = {
        let mut input = TBinaryInputProtocol::with_config(&mut cursor, true, config);
        f(&mut input).map_err(|e| CodecError::malformed(what, describe(&e)))?
    };
    Ok((value, bytes.len() - cursor.len()))
}

/// Thrift's `Display` gives only the error kind; the message says what was wrong.
fn describe(e: &thrift::Error) -> String {
    let (kind, message) = match e {
        thrift::Error::Transport(t) => (t.to_string(), &t.message),
        thrift::Error::Protocol(p) => (p.to_string(), &p.message),
        thrift::Error::Application(a) => (a.to_string(), &a.message),
        thrift::Error::User(u) => return u.to_string(),
    };
    if message.is_empty() {
        kind
    } else {
        format!("{kind}: {message}")
    }
}

/// Writes with thrift's binary protocol into `out`.
pub fn encode_with(
    out: &mut BytesMut,
    f: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
) {
    let mut output = TBinaryOutputProtocol::new(out.writer(), true);
    // The binary protocol fails only when its transport does, and writing into memory cannot.
    f(&mut output).expect("thrift binary encoding into memory cannot fail");
}

/// Decodes a value encoded on its own (no wrapper).
pub fn decode<T: ThriftWire>(bytes: &[u8], what: &'static str) -> Result<T, CodecError> {
    decode_with(bytes, what, T::read).map(|(v, _)| v)
}

/// Encodes a value on its own (no wrapper).
pub fn encode<T: ThriftWire>(value: &T, out: &mut BytesMut) {
    encode_with(out, |o| value.write(o))
}

/// Decodes the args struct of a request body: one field holding the request, then STOP. Like the
/// MetaServer (`unmarshall_thrift_internal`), the id of that field is not checked (clients send 1).
pub fn decode_args<T: ThriftWire>(args: &[u8], what: &'static str) -> Result<T, CodecError> {
    decode_with(args, what, |i| {
        i.read_struct_begin()?;
        let field = i.read_field_begin()?;
        if field.field_type == TType::Stop {
            return Err(invalid("the args struct is empty"));
        }
        let value = T::read(i)?;
        i.read_field_end()?;
        expect_stop(i, "args")?;
        i.read_struct_end()?;
        Ok(value)
    })
    .map(|(v, _)| v)
}

/// Encodes the args struct of a request body with the request in field `field_id`.
pub fn encode_args<T: ThriftWire>(value: &T, field_id: i16, out: &mut BytesMut) {
    encode_with(out, |o| write_wrapped(o, field_id, value))
}

/// Decodes the result struct of a reply body: field 0 ("success") holding the response, then STOP.
pub fn decode_result<T: ThriftWire>(body: &[u8], what: &'static str) -> Result<T, CodecError> {
    decode_with(body, what, |i| {
        i.read_struct_begin()?;
        let field = i.read_field_begin()?;
        if field.field_type != TType::Struct || field.id != Some(0) {
            return Err(invalid(format!(
                "expected the result in field 0 as a struct, found field {:?} of type {:?}",
                field.id, field.field_type
            )));
        }
        let value = T::read(i)?;
        i.read_field_end()?;
        expect_stop(i, "result")?;
        i.read_struct_end()?;
        Ok(value)
    })
    .map(|(v, _)| v)
}

/// Encodes the result struct of a reply body: the response in field 0, then STOP.
pub fn encode_result<T: ThriftWire>(value: &T, out: &mut BytesMut) {
    encode_with(out, |o| write_wrapped(o, 0, value))
}

fn write_wrapped<T: ThriftWire>(
    o: &mut dyn TOutputProtocol,
    id: i16,
    value: &T,
) -> thrift::Result<()> {
    begin_struct(o, "")?;
    write_struct_field(o, id, value)?;
    finish_struct(o)
}

fn expect_stop(i: &mut dyn TInputProtocol, what: &str) -> thrift::Result<()> {
    let field = i.read_field_begin()?;
    if field.field_type != TType::Stop {
        return Err(invalid(format!("{what} struct has more than one field")));
    }
    Ok(())
}

/// A field header without a name (names never go on the wire).
pub fn field(ty: TType, id: i16) -> TFieldIdentifier {
    TFieldIdentifier {
        name: None,
        field_type: ty,
        id: Some(id),
    }
}

/// Skips a field the decoder does not know. Anything tagged `STRUCT` is refused, at any depth: it
/// may be a Pegasus base type that is not a thrift struct, and a generic skip would misread it and
/// everything after it.
pub fn skip_plain(i: &mut dyn TInputProtocol, ty: TType) -> thrift::Result<()> {
    skip_depth(i, ty, MAX_DEPTH)
}

fn skip_depth(i: &mut dyn TInputProtocol, ty: TType, depth: usize) -> thrift::Result<()> {
    if depth == 0 {
        return Err(invalid("containers nested too deep"));
    }
    match ty {
        TType::Struct => Err(invalid(
            "refusing to skip an unknown struct-tagged field: it may be a Pegasus base type",
        )),
        TType::List => {
            let list = i.read_list_begin()?;
            for _ in 0..list.size {
                skip_depth(i, list.element_type, depth - 1)?;
            }
            i.read_list_end()
        }
        TType::Set => {
            let set = i.read_set_begin()?;
            for _ in 0..set.size {
                skip_depth(i, set.element_type, depth - 1)?;
            }
            i.read_set_end()
        }
        TType::Map => {
            let map = i.read_map_begin()?;
            if map.size > 0 {
                let (k, v) = match (map.key_type, map.value_type) {
                    (Some(k), Some(v)) => (k, v),
                    _ => return Err(invalid("map without element types")),
                };
                for _ in 0..map.size {
                    skip_depth(i, k, depth - 1)?;
                    skip_depth(i, v, depth - 1)?;
                }
            }
            i.read_map_end()
        }
        TType::Stop | TType::Void => Err(invalid(format!("unexpected field type {ty:?}"))),
        _ => i.skip(ty),
    }
}

/// Reads a list whose elements are tagged `expected` (0x0C for the Pegasus base types).
pub fn read_list<T>(
    i: &mut dyn TInputProtocol,
    expected: TType,
    mut read_one: impl FnMut(&mut dyn TInputProtocol) -> thrift::Result<T>,
) -> thrift::Result<Vec<T>> {
    let list = i.read_list_begin()?;
    if list.size > 0 && list.element_type != expected {
        return Err(invalid(format!(
            "list elements tagged {:?}, expected {expected:?}",
            list.element_type
        )));
    }
    // The size was already held to the input length by the protocol's configuration.
    let mut items = Vec::with_capacity(usize::try_from(list.size).unwrap_or(0).min(1024));
    for _ in 0..list.size {
        items.push(read_one(i)?);
    }
    i.read_list_end()?;
    Ok(items)
}

/// Writes a list whose elements are tagged `ty`.
pub fn write_list<T>(
    o: &mut dyn TOutputProtocol,
    ty: TType,
    items: &[T],
    mut write_one: impl FnMut(&mut dyn TOutputProtocol, &T) -> thrift::Result<()>,
) -> thrift::Result<()> {
    let size = i32::try_from(items.len()).map_err(|_| invalid("list too long"))?;
    o.write_list_begin(&TListIdentifier::new(ty, size))?;
    for item in items {
        write_one(o, item)?;
    }
    o.write_list_end()
}

/// Reads a map whose keys and values are tagged `key` and `value` (0x0C for a struct value). A
/// key that comes twice keeps its last value, as the C++ readers do.
pub fn read_map<K: Ord, V>(
    i: &mut dyn TInputProtocol,
    key: TType,
    value: TType,
    mut read_entry: impl FnMut(&mut dyn TInputProtocol) -> thrift::Result<(K, V)>,
) -> thrift::Result<BTreeMap<K, V>> {
    let map = i.read_map_begin()?;
    if map.size > 0 && (map.key_type != Some(key) || map.value_type != Some(value)) {
        return Err(invalid(format!(
            "map entries tagged {:?} -> {:?}, expected {key:?} -> {value:?}",
            map.key_type, map.value_type
        )));
    }
    let mut entries = BTreeMap::new();
    for _ in 0..map.size {
        let (k, v) = read_entry(i)?;
        entries.insert(k, v);
    }
    i.read_map_end()?;
    Ok(entries)
}

/// Writes a map whose keys and values are tagged `key` and `value`, in key order (the order of a
/// C++ `std::map`).
pub fn write_map<K, V>(
    o: &mut dyn TOutputProtocol,
    key: TType,
    value: TType,
    entries: &BTreeMap<K, V>,
    mut write_entry: impl FnMut(&mut dyn TOutputProtocol, &K, &V) -> thrift::Result<()>,
) -> thrift::Result<()> {
    let size = i32::try_from(entries.len()).map_err(|_| invalid("map too long"))?;
    o.write_map_begin(&TMapIdentifier::new(key, value, size))?;
    for (k, v) in entries {
        write_entry(o, k, v)?;
    }
    o.write_map_end()
}

/// Reads the fields of a struct, handing each (id, type) to `on_field`, which returns false for
/// the fields it does not know; those are skipped with [`skip_plain`].
pub fn read_struct(
    i: &mut dyn TInputProtocol,
    mut on_field: impl FnMut(&mut dyn TInputProtocol, i16, TType) -> thrift::Result<bool>,
) -> thrift::Result<()> {
    i.read_struct_begin()?;
    loop {
        let f = i.read_field_begin()?;
        if f.field_type == TType::Stop {
            break;
        }
        let id = f.id.unwrap_or(0);
        if !on_field(i, id, f.field_type)? {
            skip_plain(i, f.field_type)?;
        }
        i.read_field_end()?;
    }
    i.read_struct_end()
}

// ---------------------------------------------------------------------------------------------
// Field writers: one call per field, so that each encoder is a short list of its fields in id
// order, as the IDL reads. The `opt` ones write nothing for `None` (an optional field left out).

/// Starts a struct. Its name never goes on the wire.
pub fn begin_struct(o: &mut dyn TOutputProtocol, name: &str) -> thrift::Result<()> {
    o.write_struct_begin(&TStructIdentifier::new(name))
}

/// Ends a struct: the STOP field, then the struct end.
pub fn finish_struct(o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
    o.write_field_stop()?;
    o.write_struct_end()
}

/// A field of type `ty` whose value `write_value` writes.
pub fn write_field(
    o: &mut dyn TOutputProtocol,
    ty: TType,
    id: i16,
    write_value: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
) -> thrift::Result<()> {
    o.write_field_begin(&field(ty, id))?;
    write_value(o)?;
    o.write_field_end()
}

pub fn write_i8_field(o: &mut dyn TOutputProtocol, id: i16, v: i8) -> thrift::Result<()> {
    write_field(o, TType::I08, id, |o| o.write_i8(v))
}

pub fn write_i32_field(o: &mut dyn TOutputProtocol, id: i16, v: i32) -> thrift::Result<()> {
    write_field(o, TType::I32, id, |o| o.write_i32(v))
}

pub fn write_i64_field(o: &mut dyn TOutputProtocol, id: i16, v: i64) -> thrift::Result<()> {
    write_field(o, TType::I64, id, |o| o.write_i64(v))
}

pub fn write_bool_field(o: &mut dyn TOutputProtocol, id: i16, v: bool) -> thrift::Result<()> {
    write_field(o, TType::Bool, id, |o| o.write_bool(v))
}

pub fn write_string_field(o: &mut dyn TOutputProtocol, id: i16, v: &str) -> thrift::Result<()> {
    write_field(o, TType::String, id, |o| o.write_string(v))
}

/// A field tagged STRUCT: a thrift struct, or one of the Pegasus base types that are tagged so
/// but encode themselves (`blob`, `error_code`, `gpid`, `rpc_address`, `host_port`, §6).
pub fn write_struct_field<T: ThriftWire>(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: &T,
) -> thrift::Result<()> {
    write_field(o, TType::Struct, id, |o| v.write(o))
}

/// A list field of values tagged STRUCT (see [`write_struct_field`]).
pub fn write_structs_field<T: ThriftWire>(
    o: &mut dyn TOutputProtocol,
    id: i16,
    items: &[T],
) -> thrift::Result<()> {
    write_field(o, TType::List, id, |o| {
        write_list(o, TType::Struct, items, |o, v| v.write(o))
    })
}

/// A list field of strings.
pub fn write_strings_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    items: &[String],
) -> thrift::Result<()> {
    write_field(o, TType::List, id, |o| {
        write_list(o, TType::String, items, |o, s| o.write_string(s))
    })
}

pub fn write_opt_i8_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: Option<i8>,
) -> thrift::Result<()> {
    v.map_or(Ok(()), |v| write_i8_field(o, id, v))
}

pub fn write_opt_i32_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: Option<i32>,
) -> thrift::Result<()> {
    v.map_or(Ok(()), |v| write_i32_field(o, id, v))
}

pub fn write_opt_i64_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: Option<i64>,
) -> thrift::Result<()> {
    v.map_or(Ok(()), |v| write_i64_field(o, id, v))
}

pub fn write_opt_bool_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: Option<bool>,
) -> thrift::Result<()> {
    v.map_or(Ok(()), |v| write_bool_field(o, id, v))
}

pub fn write_opt_string_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: Option<&str>,
) -> thrift::Result<()> {
    v.map_or(Ok(()), |v| write_string_field(o, id, v))
}

pub fn write_opt_struct_field<T: ThriftWire>(
    o: &mut dyn TOutputProtocol,
    id: i16,
    v: Option<&T>,
) -> thrift::Result<()> {
    v.map_or(Ok(()), |v| write_struct_field(o, id, v))
}

pub fn write_opt_structs_field<T: ThriftWire>(
    o: &mut dyn TOutputProtocol,
    id: i16,
    items: Option<&[T]>,
) -> thrift::Result<()> {
    items.map_or(Ok(()), |items| write_structs_field(o, id, items))
}

pub fn write_opt_strings_field(
    o: &mut dyn TOutputProtocol,
    id: i16,
    items: Option<&[String]>,
) -> thrift::Result<()> {
    items.map_or(Ok(()), |items| write_strings_field(o, id, items))
}
