//! A record's stored JSON fields straight into OTLP attributes: one pass of
//! serde over the text, no intermediate `serde_json::Value` tree (the
//! encoding's largest cost, `cargo bench --bench pipeline -- wire/body`).
//! `null` is left out; an integer beyond `i64` becomes a double.

use std::fmt;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The attributes of a JSON object, in its order.
pub(super) fn attributes(json: &str) -> Result<Vec<KeyValue>, serde_json::Error> {
    serde_json::from_str::<Object>(json).map(|object| object.0)
}

struct Object(Vec<KeyValue>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of fields")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Object, M::Error> {
                pairs(map).map(Object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

fn pairs<'de, M: MapAccess<'de>>(mut map: M) -> Result<Vec<KeyValue>, M::Error> {
    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
    while let Some((key, Any(value))) = map.next_entry::<String, Any>()? {
        if let Some(value) = value {
            out.push(KeyValue {
                key,
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
        }
    }
    Ok(out)
}

/// One JSON value as an OTLP value (`None` for `null`).
struct Any(Option<Value>);

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Any, E> {
        Ok(Any(None))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Any, E> {
        Ok(Any(Some(Value::BoolValue(v))))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
        Ok(Any(Some(Value::IntValue(v))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Any, E> {
        Ok(Any(Some(match i64::try_from(v) {
            Ok(v) => Value::IntValue(v),
            Err(_) => Value::DoubleValue(v as f64),
        })))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
        Ok(Any(Some(Value::DoubleValue(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Any, E> {
        Ok(Any(Some(Value::StringValue(v.to_owned()))))
    }
    fn visit_string<E>(self, v: String) -> Result<Any, E> {
        Ok(Any(Some(Value::StringValue(v))))
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Any, S::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Any(value)) = seq.next_element::<Any>()? {
            if let Some(value) = value {
                values.push(AnyValue { value: Some(value) });
            }
        }
        Ok(Any(Some(Value::ArrayValue(ArrayValue { values }))))
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Any, M::Error> {
        Ok(Any(Some(Value::KvlistValue(KeyValueList {
            values: pairs(map)?,
        }))))
    }
}
