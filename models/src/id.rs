//! Identifiers that are validated once, when they enter the system.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier was empty.
    #[error("identifier is empty")]
    Empty,
    /// The identifier was longer than [`MAX_ID_LEN`].
    #[error("identifier is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// The identifier holds a character outside `[A-Za-z0-9_.-]`.
    #[error("identifier {0:?} may only contain letters, digits, '-', '_' and '.'")]
    BadCharacter(String),
}

/// Longest identifier accepted anywhere.
pub const MAX_ID_LEN: usize = 64;

fn validate(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    // '/' is excluded so ids can be joined into actor paths without ambiguity.
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(IdError::BadCharacter(raw.to_owned()));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses and validates an identifier.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                validate(raw)?;
                Ok(Self(Arc::from(raw)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[A-Za-z0-9_.-]{1,64}$"))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Identifier of an equipment unit, unique within a plant (e.g. `rig-1`).
    EquipmentId
);
id_type!(
    /// Identifier of a sensor, unique within its equipment unit (e.g. `PS1`).
    SensorId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        assert_eq!(EquipmentId::parse("rig-1").unwrap().as_str(), "rig-1");
        assert_eq!(SensorId::parse("PS1").unwrap().to_string(), "PS1");
    }

    #[test]
    fn refuses_path_separators_and_empty() {
        assert_eq!(EquipmentId::parse(""), Err(IdError::Empty));
        assert!(matches!(
            SensorId::parse("a/b"),
            Err(IdError::BadCharacter(_))
        ));
        assert_eq!(
            SensorId::parse(&"x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong)
        );
    }

    #[test]
    fn deserialising_validates() {
        let bad: Result<EquipmentId, _> = serde_json::from_str("\"rig 1\"");
        assert!(bad.is_err());
    }
}
