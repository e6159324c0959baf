//! Admin request args and response results written by hand from the IDL
//! (`P:idl/meta_admin.thrift` and friends), in thrift binary: `args {1: request {fields}}`,
//! `result {0: response {fields}}`. Independent of the simulator's and the proxy's decoders, for
//! tests of both, for the admin vectors, and for the simulator's admin responses.

use bytes::{BufMut, BytesMut};

/// One field of a request struct.
pub enum Field<'a> {
    Str(i16, &'a str),
    I32(i16, i32),
    Bool(i16, bool),
    Struct(i16, Vec<Field<'a>>),
    StrMap(i16, Vec<(&'a str, &'a str)>),
    /// A `dsn.error_code`: struct-typed, its payload the error's name as a string, no STOP.
    Error(i16, &'a str),
    I32List(i16, Vec<i32>),
    StrList(i16, Vec<&'a str>),
    /// A `map<i32, i32>` (or of an i32 enum).
    I32Map(i16, Vec<(i32, i32)>),
    /// A list of `count` empty maps with key and value types `key`, `value`.
    EmptyMaps {
        id: i16,
        key: u8,
        value: u8,
        count: i32,
    },
}

fn put_header(out: &mut BytesMut, ty: u8, id: i16) {
    out.put_u8(ty);
    out.put_i16(id);
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_i32(s.len() as i32);
    out.put_slice(s.as_bytes());
}

fn put_fields(out: &mut BytesMut, fields: &[Field<'_>]) {
    for f in fields {
        match f {
            Field::Str(id, s) => {
                put_header(out, 11, *id);
                put_str(out, s);
            }
            Field::I32(id, v) => {
                put_header(out, 8, *id);
                out.put_i32(*v);
            }
            Field::Bool(id, v) => {
                put_header(out, 2, *id);
                out.put_u8(u8::from(*v));
            }
            Field::Struct(id, inner) => {
                put_header(out, 12, *id);
                put_fields(out, inner);
            }
            Field::Error(id, name) => {
                put_header(out, 12, *id);
                put_str(out, name);
            }
            Field::I32List(id, items) => {
                put_header(out, 15, *id);
                out.put_u8(8);
                out.put_i32(items.len() as i32);
                for v in items {
                    out.put_i32(*v);
                }
            }
            Field::StrList(id, items) => {
                put_header(out, 15, *id);
                out.put_u8(11);
                out.put_i32(items.len() as i32);
                for v in items {
                    put_str(out, v);
                }
            }
            Field::I32Map(id, entries) => {
                put_header(out, 13, *id);
                out.put_slice(&[8, 8]);
                out.put_i32(entries.len() as i32);
                for (k, v) in entries {
                    out.put_i32(*k);
                    out.put_i32(*v);
                }
            }
            Field::EmptyMaps {
                id,
                key,
                value,
                count,
            } => {
                put_header(out, 15, *id);
                out.put_u8(13);
                out.put_i32(*count);
                for _ in 0..*count {
                    out.put_slice(&[*key, *value, 0, 0, 0, 0]);
                }
            }
            Field::StrMap(id, entries) => {
                put_header(out, 13, *id);
                out.put_slice(&[11, 11]);
                out.put_i32(entries.len() as i32);
                for (k, v) in entries {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
        }
    }
    out.put_u8(0);
}

/// `args {1: request {fields}}`.
pub fn args(fields: &[Field<'_>]) -> Vec<u8> {
    wrapped(1, fields)
}

/// `result {0: response {fields}}`, the body of a reply.
pub fn result(fields: &[Field<'_>]) -> Vec<u8> {
    wrapped(0, fields)
}

fn wrapped(id: i16, fields: &[Field<'_>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_header(&mut out, 12, id);
    put_fields(&mut out, fields);
    out.put_u8(0);
    out.to_vec()
}

/// `configuration_create_app_request {1: app_name, 2: create_app_options {1: partition_count,
/// 2: replica_count, 3: success_if_exist, 4: app_type, 5: is_stateful, 6: envs}}`.
pub fn create_app(table: &str, partitions: i32, envs: Vec<(&str, &str)>) -> Vec<u8> {
    args(&[
        Field::Str(1, table),
        Field::Struct(
            2,
            vec![
                Field::I32(1, partitions),
                Field::I32(2, 3),
                Field::Bool(3, false),
                Field::Str(4, "pegasus"),
                Field::Bool(5, true),
                Field::StrMap(6, envs),
            ],
        ),
    ])
}

/// `configuration_drop_app_request {1: app_name, 2: drop_app_options {1: success_if_not_exist}}`.
pub fn drop_app(table: &str) -> Vec<u8> {
    args(&[
        Field::Str(1, table),
        Field::Struct(2, vec![Field::Bool(1, false)]),
    ])
}

/// `configuration_recall_app_request {1: app_id, 2: new_app_name}`.
pub fn recall_app(app_id: i32, new_name: &str) -> Vec<u8> {
    args(&[Field::I32(1, app_id), Field::Str(2, new_name)])
}
