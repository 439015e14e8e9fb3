//! Python values to and from JSON: the shape corral-core reads OpenAI-style options and
//! messages in (`corral::openai`), and returns metadata and OpenAI-shaped results in.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::Value;

use crate::error::{invalid_argument, invalid_type, type_name, OrRaise};
use crate::stream::PyToolCall;

/// A Python value as JSON, as `json.dumps` takes it: dicts (and other mappings) with str keys,
/// lists and tuples, str, int, float, bool, None; a `ToolCall` as its OpenAI dict. `path`
/// names the value in errors (`""` for keyword arguments: their names are the paths). Python
/// ints and floats stay apart (core rejects a float where an int belongs), and NaN or
/// infinity is an error rather than JSON's `null`.
pub fn from_py(py: Python<'_>, value: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return match (value.extract::<i64>(), value.extract::<u64>()) {
            (Ok(i), _) => Ok(i.into()),
            (_, Ok(u)) => Ok(u.into()),
            _ => Err(invalid_argument(py, format!("{path} is out of range, got {value}"))),
        };
    }
    if value.is_instance_of::<PyFloat>() {
        return corral::openai::number(path, value.extract::<f64>()?).or_raise(py);
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Value::String(text.to_cow()?.into_owned()));
    }
    if let Ok(call) = value.cast::<PyToolCall>() {
        return Ok(call.get().to_core().to_openai());
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items = value.try_iter()?.enumerate().map(|(i, item)| from_py(py, &item?, &format!("{path}[{i}]")));
        return items.collect::<PyResult<_>>().map(Value::Array);
    }
    if let Ok(mapping) = value.cast::<PyMapping>() {
        let mut map = serde_json::Map::new();
        for item in mapping.items()?.try_iter()? {
            let (key, item): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            let Ok(key) = key.cast::<PyString>().map(|k| k.to_cow().map(|k| k.into_owned())) else {
                return Err(invalid_type(py, format!("{path} keys must be str, got {}", type_name(&key))));
            };
            let key = key?;
            let child = if path.is_empty() { key.clone() } else { format!("{path}[{key:?}]") };
            map.insert(key, from_py(py, &item, &child)?);
        }
        return Ok(Value::Object(map));
    }
    Err(invalid_type(py, format!("{path} must be JSON-serialisable (dict, list, str, int, float, bool or None), got {}", type_name(value))))
}

/// A JSON value as the Python value `json.loads` would give.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => PyList::new(py, items.iter().map(|v| to_py(py, v)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}
