//! Engineering units and conversions between them, for values a client sends in
//! another unit than the sensor's.
//!
//! Every unit is an affine map onto its quantity's base unit
//! (`base = value * scale + offset`): pressure in Pa, temperature in K, volume
//! flow in m³/s, power in W, velocity in m/s, ratio in fractions of one.
//! Spellings are matched exactly first, then case-insensitively among the
//! aliases below (`C`, `degC`, `°C` are one unit); case folding only applies
//! when no spelling matches exactly, and a folded name that means something
//! else exactly (`mW` is not `MW`) is better sent exactly.

/// What a unit measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Pressure,
    Temperature,
    VolumeFlow,
    Power,
    /// Velocity (vibration).
    Velocity,
    /// Dimensionless ratio.
    Ratio,
}

struct Unit {
    names: &'static [&'static str],
    quantity: Quantity,
    scale: f64,
    offset: f64,
}

const fn unit(names: &'static [&'static str], quantity: Quantity, scale: f64) -> Unit {
    Unit {
        names,
        quantity,
        scale,
        offset: 0.0,
    }
}

use Quantity::*;

const UNITS: &[Unit] = &[
    unit(&["Pa"], Pressure, 1.0),
    unit(&["kPa"], Pressure, 1e3),
    unit(&["MPa"], Pressure, 1e6),
    unit(&["bar"], Pressure, 1e5),
    unit(&["mbar"], Pressure, 100.0),
    unit(&["psi"], Pressure, 6_894.757_293_168),
    Unit {
        names: &["°C", "C", "degC", "celsius"],
        quantity: Temperature,
        scale: 1.0,
        offset: 273.15,
    },
    unit(&["K", "kelvin"], Temperature, 1.0),
    Unit {
        names: &["°F", "F", "degF", "fahrenheit"],
        quantity: Temperature,
        scale: 5.0 / 9.0,
        offset: 273.15 - 32.0 * 5.0 / 9.0,
    },
    unit(&["l/min", "L/min", "lpm"], VolumeFlow, 1e-3 / 60.0),
    unit(&["l/s", "L/s"], VolumeFlow, 1e-3),
    unit(&["m3/h", "m³/h"], VolumeFlow, 1.0 / 3600.0),
    unit(&["m3/s", "m³/s"], VolumeFlow, 1.0),
    unit(&["gpm", "gal/min"], VolumeFlow, 3.785_411_784e-3 / 60.0),
    unit(&["W"], Power, 1.0),
    unit(&["kW"], Power, 1e3),
    unit(&["MW"], Power, 1e6),
    unit(&["hp"], Power, 745.699_871_582_270_2),
    unit(&["mm/s"], Velocity, 1e-3),
    unit(&["m/s"], Velocity, 1.0),
    unit(&["in/s", "ips"], Velocity, 0.0254),
    unit(&["%", "percent"], Ratio, 0.01),
    unit(&["1", "ratio", "fraction"], Ratio, 1.0),
];

fn find(name: &str) -> Option<&'static Unit> {
    let name = name.trim();
    UNITS.iter().find(|u| u.names.contains(&name)).or_else(|| {
        UNITS
            .iter()
            .find(|u| u.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    })
}

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The unit is not one we know.
    #[error("unknown unit {0:?}")]
    Unknown(String),
    /// The units measure different things.
    #[error("cannot convert {from:?} to {to:?}: different quantities")]
    Incompatible {
        /// The unit given.
        from: String,
        /// The unit wanted.
        to: String,
    },
}

/// `value` in unit `from` expressed in unit `to`. Identical spellings convert
/// trivially, even when we do not know the unit.
pub fn convert(value: f64, from: &str, to: &str) -> Result<f64, UnitError> {
    if from.trim() == to.trim() {
        return Ok(value);
    }
    let f = find(from).ok_or_else(|| UnitError::Unknown(from.to_owned()))?;
    let t = find(to).ok_or_else(|| UnitError::Unknown(to.to_owned()))?;
    if f.quantity != t.quantity {
        return Err(UnitError::Incompatible {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    if std::ptr::eq(f, t) {
        return Ok(value);
    }
    Ok((value * f.scale + f.offset - t.offset) / t.scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn conversions_between_units_of_a_quantity() {
        let cases = [
            (1.0, "MPa", "bar", 10.0),
            (14.503_773_773, "psi", "bar", 1.0),
            (2500.0, "mbar", "bar", 2.5),
            (212.0, "°F", "°C", 100.0),
            (300.0, "K", "degC", 26.85),
            (20.0, "degC", "°C", 20.0),
            (6.0, "m3/h", "l/min", 100.0),
            (1.5, "kW", "W", 1500.0),
            (0.002, "m/s", "mm/s", 2.0),
            (0.5, "1", "%", 50.0),
            (7.0, "whatever", "whatever", 7.0),
        ];
        for (value, from, to, want) in cases {
            let got = convert(value, from, to).unwrap();
            assert!(
                close(got, want),
                "{value} {from} → {to}: {got}, want {want}"
            );
        }
    }

    #[test]
    fn exact_spelling_wins_over_case_folding() {
        assert!(close(convert(1.0, "MW", "W").unwrap(), 1e6));
        assert!(close(convert(1.0, "BAR", "bar").unwrap(), 1.0));
    }

    #[test]
    fn unknown_and_incompatible_units_are_refused() {
        assert_eq!(
            convert(1.0, "furlong", "bar"),
            Err(UnitError::Unknown("furlong".into()))
        );
        assert!(matches!(
            convert(1.0, "bar", "°C"),
            Err(UnitError::Incompatible { .. })
        ));
    }
}
