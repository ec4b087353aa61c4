//! Lenient reading of scalars, and the small deserialization helpers every model file shares.
//!
//! Interpolation turns `${REPLICAS}` into the string `"3"`, so a field the schema types as an
//! integer, a number or a boolean must also accept the same value written as text. compose-go
//! casts those strings after interpolation; we do it here, in one place, for every such field.

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// `x-` extension keys and their values, kept as written.
pub type Extensions = IndexMap<String, serde_json::Value>;

/// A scalar as it arrived in the document, before it is read as the type a field wants.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw<'a> {
    Text(&'a str),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Text(s) => write!(f, "string `{s}`"),
            Raw::Int(i) => write!(f, "integer {i}"),
            Raw::UInt(u) => write!(f, "integer {u}"),
            Raw::Float(x) => write!(f, "number {x}"),
            Raw::Bool(b) => write!(f, "boolean {b}"),
        }
    }
}

/// A value read from one scalar, either native or as text.
pub(crate) trait Scalar: Sized {
    /// What the value should look like, completing "expected ...".
    const EXPECTING: &'static str;

    /// Reads the scalar; the error says what was wrong with it.
    fn from_raw(raw: Raw<'_>) -> Result<Self, String>;
}

/// The error for a scalar of the right kind but the wrong shape or kind.
pub(crate) fn mismatch<T: Scalar>(raw: Raw<'_>) -> String {
    format!("expected {}, found {raw}", T::EXPECTING)
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<T: Scalar> ScalarVisitor<T> {
    fn read<E: de::Error>(raw: Raw<'_>) -> Result<T, E> {
        T::from_raw(raw).map_err(E::custom)
    }
}

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Self::read(Raw::Text(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::read(Raw::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::read(Raw::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Self::read(Raw::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Self::read(Raw::Bool(v))
    }
}

/// Reads one scalar as `T`.
pub(crate) fn scalar<'de, D: Deserializer<'de>, T: Scalar>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(ScalarVisitor(PhantomData))
}

/// A `T` read leniently, for use inside containers (`Option`, `Vec`, maps).
pub(crate) struct Flex<T>(pub T);

impl<'de, T: Scalar> Deserialize<'de> for Flex<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d).map(Flex)
    }
}

/// For `#[serde(deserialize_with)]` on an `Option<T>` field: null leaves it unset.
pub(crate) fn opt<'de, D: Deserializer<'de>, T: Scalar>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Flex<T>>::deserialize(d)?.map(|f| f.0))
}

/// For `#[serde(deserialize_with)]` on a `T` field.
pub(crate) fn req<'de, D: Deserializer<'de>, T: Scalar>(d: D) -> Result<T, D::Error> {
    scalar(d)
}

/// A list of scalars each read leniently (`group_add: [1000, wheel]`).
pub(crate) fn list<'de, D: Deserializer<'de>, T: Scalar>(d: D) -> Result<Vec<T>, D::Error> {
    let items = Option::<Vec<Flex<T>>>::deserialize(d)?.unwrap_or_default();
    Ok(items.into_iter().map(|f| f.0).collect())
}

impl Scalar for bool {
    const EXPECTING: &'static str = "a boolean (true or false)";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Bool(b) => Ok(b),
            // The YAML 1.1 spellings compose-go accepts once interpolation produced text.
            Raw::Text(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => Ok(true),
                "false" | "no" | "n" | "off" => Ok(false),
                _ => Err(mismatch::<Self>(raw)),
            },
            _ => Err(mismatch::<Self>(raw)),
        }
    }
}

macro_rules! integer_scalar {
    ($($t:ty => $expecting:literal),*) => {$(
        impl Scalar for $t {
            const EXPECTING: &'static str = $expecting;

            fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
                let wide: Option<i128> = match raw {
                    Raw::Int(i) => Some(i.into()),
                    Raw::UInt(u) => Some(u.into()),
                    Raw::Float(x) if x.fract() == 0.0 && x.abs() < 1e30 => Some(x as i128),
                    Raw::Text(s) => s.parse::<i128>().ok(),
                    _ => None,
                };
                wide.and_then(|w| <$t>::try_from(w).ok()).ok_or_else(|| mismatch::<Self>(raw))
            }
        }
    )*};
}

integer_scalar!(
    i64 => "an integer",
    u64 => "an integer of 0 or more",
    u32 => "an integer from 0 to 4294967295",
    u16 => "an integer from 0 to 65535"
);

impl Scalar for f64 {
    const EXPECTING: &'static str = "a number";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        let value = match raw {
            Raw::Int(i) => i as f64,
            Raw::UInt(u) => u as f64,
            Raw::Float(x) => x,
            Raw::Text(s) => s.parse::<f64>().map_err(|_| mismatch::<Self>(raw))?,
            Raw::Bool(_) => return Err(mismatch::<Self>(raw)),
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(mismatch::<Self>(raw))
        }
    }
}

/// Strings are read from any scalar: `labels: {port: 8080}` means the label `"8080"`.
impl Scalar for String {
    const EXPECTING: &'static str = "a string";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        Ok(match raw {
            Raw::Text(s) => s.to_string(),
            Raw::Int(i) => i.to_string(),
            Raw::UInt(u) => u.to_string(),
            Raw::Float(x) => float_text(x),
            Raw::Bool(b) => b.to_string(),
        })
    }
}

/// A number written as text the way compose (Go's `fmt.Sprint`) writes it: `1.0` is `"1"`.
pub(crate) fn float_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e21 {
        format!("{x:.0}")
    } else {
        x.to_string()
    }
}

/// For the `#[serde(flatten)]` extensions field: only `x-` keys may be added to a
/// definition. Anything else is a key the spec does not define here, and an error.
pub(crate) fn extensions<'de, D: Deserializer<'de>>(d: D) -> Result<Extensions, D::Error> {
    let map = Extensions::deserialize(d)?;
    match map.keys().find(|k| !k.starts_with("x-")) {
        Some(key) => Err(de::Error::custom(format!(
            "unknown attribute `{key}` (only `x-` extensions may be added here)"
        ))),
        None => Ok(map),
    }
}

/// A `T` where null means `T::default()` (`networks: {back: }`).
pub(crate) struct OrDefault<T>(pub T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for OrDefault<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OrDefault(Option::<T>::deserialize(d)?.unwrap_or_default()))
    }
}

/// A map of named definitions where a definition may be null (`volumes: {data: }`), and
/// the whole map may be null too.
pub(crate) fn named_map<'de, D, T>(d: D) -> Result<IndexMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let map = Option::<IndexMap<String, OrDefault<T>>>::deserialize(d)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A list of strings that may also be written as one string (`dns: 8.8.8.8`).
pub(crate) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<Flex<String>>()? {
                out.push(item.0);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// True for `false`, for `skip_serializing_if` on flags that only print when set.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T: Scalar>(v: serde_json::Value) -> Result<T, String> {
        scalar::<_, T>(v).map_err(|e| e.to_string())
    }

    #[test]
    fn booleans_accept_yaml_1_1_spellings_as_text() {
        for (text, want) in [("true", true), ("Yes", true), ("on", true), ("y", true)] {
            assert_eq!(read::<bool>(json!(text)), Ok(want), "{text}");
        }
        for text in ["false", "NO", "off", "n"] {
            assert_eq!(read::<bool>(json!(text)), Ok(false), "{text}");
        }
        assert_eq!(read::<bool>(json!(true)), Ok(true));
        let err = read::<bool>(json!("maybe")).unwrap_err();
        assert!(
            err.contains("expected a boolean") && err.contains("`maybe`"),
            "{err}"
        );
        assert!(read::<bool>(json!(1)).is_err());
    }

    #[test]
    fn integers_accept_text_and_integral_numbers() {
        assert_eq!(read::<u64>(json!("3")), Ok(3));
        assert_eq!(read::<u64>(json!(3)), Ok(3));
        assert_eq!(read::<i64>(json!(-1)), Ok(-1));
        assert_eq!(read::<i64>(json!(2.0)), Ok(2));
        assert!(read::<u64>(json!(-1)).is_err());
        assert!(read::<u64>(json!(2.5)).is_err());
        assert!(read::<u16>(json!(70000)).is_err());
        let err = read::<u64>(json!("three")).unwrap_err();
        assert!(
            err.contains("expected an integer") && err.contains("`three`"),
            "{err}"
        );
    }

    #[test]
    fn floats_accept_text() {
        assert_eq!(read::<f64>(json!("2.75")), Ok(2.75));
        assert_eq!(read::<f64>(json!(2)), Ok(2.0));
        assert!(read::<f64>(json!("NaN")).is_err());
        assert!(read::<f64>(json!("x")).is_err());
    }

    #[test]
    fn strings_accept_any_scalar() {
        assert_eq!(read::<String>(json!(8080)), Ok("8080".into()));
        assert_eq!(read::<String>(json!(1.0)), Ok("1".into()));
        assert_eq!(read::<String>(json!(1.5)), Ok("1.5".into()));
        assert_eq!(read::<String>(json!(false)), Ok("false".into()));
        assert!(read::<String>(json!([1])).is_err());
    }

    #[test]
    fn extensions_reject_keys_without_the_x_prefix() {
        let ok = extensions(json!({"x-a": 1})).unwrap();
        assert_eq!(ok.get("x-a"), Some(&json!(1)));
        let err = extensions(json!({"x-a": 1, "bogus": 2}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`bogus`"), "{err}");
    }

    #[test]
    fn string_or_list_reads_both() {
        assert_eq!(string_or_list(json!("a")).unwrap(), vec!["a"]);
        assert_eq!(string_or_list(json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        assert!(string_or_list(json!({"a": 1})).is_err());
    }
}
