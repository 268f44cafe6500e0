//! serde for `AddressSpec` in its text form, "IP/PREFIX[@INTERFACE]", as
//! replication.toml, site.toml's substitutes, the control API's replica
//! addresses and `tandem status` write it. Reading parses and checks it
//! (`names::parse_address`), so a value inside the daemon is always a
//! checked address. `AddressSpec`'s own serde form (a struct) is the
//! store's on-disk one and the control API's `vserver_create`, and stays.
//!
//! Use with `#[serde(with = "crate::config::address_text")]`, or the
//! `option` and `list` modules for `Option<AddressSpec>` and
//! `Vec<AddressSpec>`.

use serde::{Deserialize, Deserializer, Serializer};
use tandem_store::AddressSpec;

use crate::config::names::parse_address;

pub fn serialize<S: Serializer>(a: &AddressSpec, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(a)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AddressSpec, D::Error> {
    let text = String::deserialize(d)?;
    parse_address(&text).map_err(serde::de::Error::custom)
}

/// The text form of an `Option<AddressSpec>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(a: &Option<AddressSpec>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AddressSpec>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse_address(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The text form of a `Vec<AddressSpec>`.
pub mod list {
    use serde::ser::SerializeSeq;

    use super::*;

    pub fn serialize<S: Serializer>(list: &[AddressSpec], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for a in list {
            seq.serialize_element(&a.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AddressSpec>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| parse_address(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use tandem_store::AddressSpec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        one: AddressSpec,
        #[serde(
            default,
            with = "super::option",
            skip_serializing_if = "Option::is_none"
        )]
        maybe: Option<AddressSpec>,
        #[serde(with = "super::list")]
        many: Vec<AddressSpec>,
    }

    #[test]
    fn text_form_round_trips_and_bad_text_is_refused() {
        let json = r#"{"one":"127.0.0.2/32","maybe":"10.1.2.3/24@eth0","many":["fd00::5/64@br-x","127.0.0.3/32"]}"#;
        let h: Holder = serde_json::from_str(json).unwrap();
        assert_eq!(h.one.to_string(), "127.0.0.2/32");
        assert_eq!(h.maybe.as_ref().unwrap().interface.as_deref(), Some("eth0"));
        assert_eq!(h.many.len(), 2);
        assert_eq!(serde_json::to_string(&h).unwrap(), json);
        let none: Holder = serde_json::from_str(r#"{"one":"127.0.0.2/32","many":[]}"#).unwrap();
        assert_eq!(none.maybe, None);
        assert_eq!(
            toml::to_string(&none).unwrap(),
            "one = \"127.0.0.2/32\"\nmany = []\n"
        );
        for bad in [
            r#"{"one":"127.0.0.2","many":[]}"#,
            r#"{"one":"127.0.0.2/32","maybe":"0.0.0.0/0","many":[]}"#,
            r#"{"one":"127.0.0.2/32","many":["1.2.3.4/32@a:b"]}"#,
            r#"{"one":{"ip":"127.0.0.2","prefix":32,"interface":null},"many":[]}"#,
        ] {
            assert!(serde_json::from_str::<Holder>(bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<Holder>(r#"{"one":"1.2.3","many":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid address"), "{e}");
    }
}
