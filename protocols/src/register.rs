//! Register maps: where a sensor's value lives in a device and how to decode it.

use serde::{Deserialize, Serialize};

use hydrowatch_models::SensorId;

/// How many 16-bit registers a Modbus read may return at most (spec: 125).
pub const MAX_REGISTERS_PER_READ: u16 = 125;

/// How many coils or discrete inputs a Modbus read may return at most (spec: 2000).
pub const MAX_BITS_PER_READ: u16 = 2000;

/// The register table a point is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Function code 0x03.
    Holding,
    /// Function code 0x04.
    Input,
    /// Function code 0x01: read-write bits.
    Coil,
    /// Function code 0x02: read-only bits.
    DiscreteInput,
}

impl RegisterKind {
    /// Whether the table holds single bits rather than 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::DiscreteInput)
    }

    /// Whether a client may write the table.
    pub fn is_writable(self) -> bool {
        matches!(self, RegisterKind::Holding | RegisterKind::Coil)
    }
}

/// The encoding of a value across one or more registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// Unsigned 16-bit integer, one register.
    U16,
    /// Signed 16-bit integer, one register.
    I16,
    /// Unsigned 32-bit integer, two registers.
    U32,
    /// Signed 32-bit integer, two registers.
    I32,
    /// IEEE 754 single precision, two registers.
    F32,
    /// IEEE 754 double precision, four registers.
    F64,
    /// Unsigned 64-bit integer, four registers (exact up to 2^53).
    U64,
    /// Signed 64-bit integer, four registers (exact within ±2^53).
    I64,
    /// One coil or discrete input: 0 or 1.
    Bool,
}

impl DataType {
    /// Registers the type occupies.
    pub fn registers(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bool => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::F64 | DataType::U64 | DataType::I64 => 4,
        }
    }
}

/// Byte order inside each 16-bit register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByteOrder {
    /// High byte first, as the Modbus specification says (the usual case).
    #[default]
    Big,
    /// Low byte first (some devices swap bytes).
    Little,
}

/// Order of the registers of a multi-register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// Most significant register first ("ABCD").
    #[default]
    Big,
    /// Least significant register first ("CDAB").
    Little,
}

/// The four usual names of byte and word order for 32- and 64-bit values, as
/// device manuals give them ("ABCD" is the value's bytes most significant
/// first, as they arrive on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endianness {
    /// Big-endian words, most significant word first.
    Abcd,
    /// Big-endian words, least significant word first (word swap).
    Cdab,
    /// Bytes swapped in each word, most significant word first (byte swap).
    Badc,
    /// Little-endian throughout.
    Dcba,
}

impl Endianness {
    /// The byte and word order it names.
    pub fn orders(self) -> (ByteOrder, WordOrder) {
        match self {
            Endianness::Abcd => (ByteOrder::Big, WordOrder::Big),
            Endianness::Cdab => (ByteOrder::Big, WordOrder::Little),
            Endianness::Badc => (ByteOrder::Little, WordOrder::Big),
            Endianness::Dcba => (ByteOrder::Little, WordOrder::Little),
        }
    }
}

/// One sensor's place in a device's registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPoint {
    /// The sensor the value belongs to.
    pub sensor: SensorId,
    /// The unit (slave) id when it is not the connection's, e.g. several
    /// devices behind one gateway.
    #[serde(default)]
    pub unit: Option<u8>,
    /// Which Modbus table; holding registers if absent.
    #[serde(default = "default_kind")]
    pub kind: RegisterKind,
    /// Zero-based address of the first register.
    pub address: u16,
    /// Encoding.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Byte order within registers.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Register order of multi-register values.
    #[serde(default)]
    pub word_order: WordOrder,
    /// Engineering value = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    /// See `scale`.
    #[serde(default)]
    pub offset: f64,
}

fn default_kind() -> RegisterKind {
    RegisterKind::Holding
}

fn one() -> f64 {
    1.0
}

impl RegisterPoint {
    /// Decodes the point from exactly [`DataType::registers`] registers.
    pub fn decode(&self, registers: &[u16]) -> Option<f64> {
        if registers.len() != self.data_type.registers() as usize {
            return None;
        }
        let bytes = self.to_big_endian_bytes(registers);
        let raw = match self.data_type {
            DataType::U16 => u16::from_be_bytes([bytes[0], bytes[1]]) as f64,
            DataType::I16 => i16::from_be_bytes([bytes[0], bytes[1]]) as f64,
            DataType::U32 => u32::from_be_bytes(bytes[..4].try_into().ok()?) as f64,
            DataType::I32 => i32::from_be_bytes(bytes[..4].try_into().ok()?) as f64,
            DataType::F32 => f32::from_be_bytes(bytes[..4].try_into().ok()?) as f64,
            DataType::F64 => f64::from_be_bytes(bytes[..8].try_into().ok()?),
            DataType::U64 => u64::from_be_bytes(bytes[..8].try_into().ok()?) as f64,
            DataType::I64 => i64::from_be_bytes(bytes[..8].try_into().ok()?) as f64,
            DataType::Bool => match registers[0] {
                0 => 0.0,
                1 => 1.0,
                _ => return None,
            },
        };
        Some(raw * self.scale + self.offset)
    }

    /// Encodes an engineering value into registers (what a device would hold);
    /// the inverse of [`Self::decode`], used by the simulators.
    pub fn encode(&self, value: f64) -> Vec<u16> {
        let raw = if self.scale == 0.0 {
            0.0
        } else {
            (value - self.offset) / self.scale
        };
        let be: Vec<u8> = match self.data_type {
            DataType::U16 => (raw.round().clamp(0.0, u16::MAX as f64) as u16)
                .to_be_bytes()
                .to_vec(),
            DataType::I16 => (raw.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16)
                .to_be_bytes()
                .to_vec(),
            DataType::U32 => (raw.round().clamp(0.0, u32::MAX as f64) as u32)
                .to_be_bytes()
                .to_vec(),
            DataType::I32 => (raw.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32)
                .to_be_bytes()
                .to_vec(),
            DataType::F32 => (raw as f32).to_be_bytes().to_vec(),
            DataType::F64 => raw.to_be_bytes().to_vec(),
            // `as` saturates at the type's bounds, as the clamps above do.
            DataType::U64 => (raw.round().max(0.0) as u64).to_be_bytes().to_vec(),
            DataType::I64 => (raw.round() as i64).to_be_bytes().to_vec(),
            DataType::Bool => return vec![u16::from(raw != 0.0)],
        };
        // Big-endian words, most significant first; then apply the device's orders.
        let mut words: Vec<[u8; 2]> = be.chunks(2).map(|c| [c[0], c[1]]).collect();
        if self.word_order == WordOrder::Little {
            words.reverse();
        }
        words
            .into_iter()
            .map(|[hi, lo]| match self.byte_order {
                ByteOrder::Big => u16::from_be_bytes([hi, lo]),
                ByteOrder::Little => u16::from_be_bytes([lo, hi]),
            })
            .collect()
    }

    fn to_big_endian_bytes(&self, registers: &[u16]) -> Vec<u8> {
        let mut words: Vec<u16> = registers
            .iter()
            .map(|&r| match self.byte_order {
                ByteOrder::Big => r,
                ByteOrder::Little => r.swap_bytes(),
            })
            .collect();
        if self.word_order == WordOrder::Little {
            words.reverse();
        }
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// One past the last register of the point.
    pub fn end(&self) -> u32 {
        self.address as u32 + self.data_type.registers() as u32
    }
}

/// Contiguous registers read with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    /// The point's own unit id, if it has one.
    pub unit: Option<u8>,
    pub kind: RegisterKind,
    /// First register (or bit).
    pub start: u16,
    /// Number of registers (or bits).
    pub count: u16,
    /// Indices into [`RegisterMap::points`] decoded from this block.
    pub points: Vec<usize>,
}

/// Every point read from one device (one Modbus unit).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegisterMap {
    /// The points, in the order readings are reported.
    pub points: Vec<RegisterPoint>,
}

/// Why a register map was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterMapError {
    /// A point ends beyond the 16-bit address space.
    #[error("sensor {0}: registers run past address 65535")]
    OutOfAddressSpace(String),
    /// Two points share registers.
    #[error("sensors {0} and {1} overlap in the {2:?} registers")]
    Overlap(String, String, RegisterKind),
    /// A scale of zero or a non-finite scale/offset.
    #[error("sensor {0}: scale must be finite and non-zero, offset finite")]
    BadScale(String),
    /// A bit table with a register type, or a register table with `bool`.
    #[error("sensor {0}: coils and discrete inputs are `bool`, and `bool` is only for them")]
    TypeMismatch(String),
}

impl RegisterMap {
    /// Validates and builds a map.
    pub fn new(points: Vec<RegisterPoint>) -> Result<Self, RegisterMapError> {
        for p in &points {
            if p.end() > 65536 {
                return Err(RegisterMapError::OutOfAddressSpace(p.sensor.to_string()));
            }
            if !p.scale.is_finite() || p.scale == 0.0 || !p.offset.is_finite() {
                return Err(RegisterMapError::BadScale(p.sensor.to_string()));
            }
            if p.kind.is_bits() != (p.data_type == DataType::Bool) {
                return Err(RegisterMapError::TypeMismatch(p.sensor.to_string()));
            }
        }
        let mut sorted: Vec<&RegisterPoint> = points.iter().collect();
        sorted.sort_by_key(|p| (p.unit, p.kind, p.address));
        for pair in sorted.windows(2) {
            if (pair[0].unit, pair[0].kind) == (pair[1].unit, pair[1].kind)
                && pair[0].end() > pair[1].address as u32
            {
                return Err(RegisterMapError::Overlap(
                    pair[0].sensor.to_string(),
                    pair[1].sensor.to_string(),
                    pair[0].kind,
                ));
            }
        }
        Ok(Self { points })
    }

    /// Groups the points into as few reads as possible: adjacent or nearby points
    /// of one table of one unit share a request as long as it stays within
    /// `max_registers` (or `max_bits` for coils and discrete inputs) and the gap
    /// between them is at most `max_gap` registers (bits).
    pub fn read_plan(&self, max_registers: u16, max_bits: u16, max_gap: u16) -> Vec<ReadBlock> {
        let mut order: Vec<usize> = (0..self.points.len()).collect();
        order.sort_by_key(|&i| {
            let p = &self.points[i];
            (p.unit, p.kind, p.address)
        });
        let mut blocks: Vec<ReadBlock> = Vec::new();
        for i in order {
            let p = &self.points[i];
            if let Some(block) = blocks.last_mut() {
                let block_end = block.start as u32 + block.count as u32;
                let limit = if p.kind.is_bits() {
                    max_bits
                } else {
                    max_registers
                };
                let fits = (block.unit, block.kind) == (p.unit, p.kind)
                    && p.address as u32 <= block_end + max_gap as u32
                    && p.end() - block.start as u32 <= limit as u32;
                if fits {
                    block.count = (p.end().max(block_end) - block.start as u32) as u16;
                    block.points.push(i);
                    continue;
                }
            }
            blocks.push(ReadBlock {
                unit: p.unit,
                kind: p.kind,
                start: p.address,
                count: p.data_type.registers(),
                points: vec![i],
            });
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(data_type: DataType, byte_order: ByteOrder, word_order: WordOrder) -> RegisterPoint {
        RegisterPoint {
            sensor: SensorId::parse("S").unwrap(),
            unit: None,
            kind: RegisterKind::Holding,
            address: 0,
            data_type,
            byte_order,
            word_order,
            scale: 1.0,
            offset: 0.0,
        }
    }

    use ByteOrder as B;
    use DataType as T;
    use WordOrder as W;

    #[test]
    fn decodes_known_register_images() {
        // 123.456f32 = 0x42F6E979: ABCD, CDAB, BADC, DCBA.
        let v = 123.456f32 as f64;
        let cases = [
            (B::Big, W::Big, [0x42F6, 0xE979]),
            (B::Big, W::Little, [0xE979, 0x42F6]),
            (B::Little, W::Big, [0xF642, 0x79E9]),
            (B::Little, W::Little, [0x79E9, 0xF642]),
        ];
        for (b, w, regs) in cases {
            assert_eq!(point(T::F32, b, w).decode(&regs), Some(v), "{b:?} {w:?}");
        }
        assert_eq!(
            point(T::U16, B::Big, W::Big).decode(&[0xFFFF]),
            Some(65535.0)
        );
        assert_eq!(point(T::I16, B::Big, W::Big).decode(&[0xFFFE]), Some(-2.0));
        assert_eq!(
            point(T::U32, B::Big, W::Big).decode(&[0x0001, 0x0002]),
            Some(65538.0)
        );
        assert_eq!(
            point(T::I32, B::Big, W::Little).decode(&[0xFFFF, 0xFFFF]),
            Some(-1.0)
        );
        // 1.0f64 = 0x3FF0_0000_0000_0000.
        assert_eq!(
            point(T::F64, B::Big, W::Big).decode(&[0x3FF0, 0, 0, 0]),
            Some(1.0)
        );
        assert_eq!(
            point(T::F64, B::Big, W::Little).decode(&[0, 0, 0, 0x3FF0]),
            Some(1.0)
        );
    }

    #[test]
    fn wrong_register_count_is_refused() {
        assert_eq!(point(T::F32, B::Big, W::Big).decode(&[1]), None);
    }

    #[test]
    fn encode_inverts_decode_for_every_type_and_order() {
        for t in [
            T::U16,
            T::I16,
            T::U32,
            T::I32,
            T::F32,
            T::F64,
            T::U64,
            T::I64,
        ] {
            for b in [B::Big, B::Little] {
                for w in [W::Big, W::Little] {
                    let mut p = point(t, b, w);
                    p.scale = 0.1;
                    p.offset = -5.0;
                    let value = 42.5;
                    let regs = p.encode(value);
                    assert_eq!(regs.len(), t.registers() as usize);
                    let back = p.decode(&regs).unwrap();
                    assert!((back - value).abs() < 1e-4, "{t:?} {b:?} {w:?}: {back}");
                }
            }
        }
    }

    #[test]
    fn read_plan_merges_adjacent_points_within_limits() {
        let mut points = Vec::new();
        for i in 0..17u16 {
            let mut p = point(T::F32, B::Big, W::Big);
            p.sensor = SensorId::parse(&format!("S{i}")).unwrap();
            p.address = i * 2;
            points.push(p);
        }
        let map = RegisterMap::new(points.clone()).unwrap();
        let plan = map.read_plan(MAX_REGISTERS_PER_READ, MAX_BITS_PER_READ, 0);
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].start, plan[0].count), (0, 34));
        // A device limited to 10 registers per read needs 4 requests.
        let plan = map.read_plan(10, MAX_BITS_PER_READ, 0);
        assert_eq!(plan.len(), 4);
        assert!(plan.iter().all(|b| b.count <= 10));
        // Input registers are never merged with holding registers.
        points[3].kind = RegisterKind::Input;
        let plan = RegisterMap::new(points.clone())
            .unwrap()
            .read_plan(125, MAX_BITS_PER_READ, 0);
        assert_eq!(plan.len(), 3);
        // Nor are the registers of another unit behind the same gateway.
        points[3].kind = RegisterKind::Holding;
        points[9].unit = Some(7);
        let plan = RegisterMap::new(points.clone())
            .unwrap()
            .read_plan(125, MAX_BITS_PER_READ, 0);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.iter().filter(|b| b.unit == Some(7)).count(), 1);
    }

    #[test]
    fn read_plan_bridges_gaps_up_to_max_gap_and_counts_bits_against_their_own_limit() {
        let mut a = point(T::U16, B::Big, W::Big);
        let mut b = point(T::U16, B::Big, W::Big);
        b.sensor = SensorId::parse("T").unwrap();
        b.address = 10;
        let map = RegisterMap::new(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(map.read_plan(125, 2000, 8).len(), 2);
        let plan = map.read_plan(125, 2000, 9);
        assert_eq!((plan.len(), plan[0].start, plan[0].count), (1, 0, 11));

        // 300 coils apart: one read of bits (limit 2000), where registers (125) would need two.
        a.kind = RegisterKind::Coil;
        a.data_type = T::Bool;
        b.kind = RegisterKind::Coil;
        b.data_type = T::Bool;
        b.address = 300;
        let map = RegisterMap::new(vec![a, b]).unwrap();
        let plan = map.read_plan(125, 2000, 300);
        assert_eq!((plan.len(), plan[0].count), (1, 301));
        assert_eq!(map.read_plan(125, 100, 300).len(), 2);
    }

    #[test]
    fn bit_tables_take_bool_and_only_they_do() {
        let mut p = point(T::Bool, B::Big, W::Big);
        assert!(matches!(
            RegisterMap::new(vec![p.clone()]),
            Err(RegisterMapError::TypeMismatch(_))
        ));
        p.kind = RegisterKind::DiscreteInput;
        assert!(RegisterMap::new(vec![p.clone()]).is_ok());
        p.data_type = T::U16;
        assert!(matches!(
            RegisterMap::new(vec![p]),
            Err(RegisterMapError::TypeMismatch(_))
        ));
        let b = point(T::Bool, B::Big, W::Big);
        assert_eq!(b.decode(&[1]), Some(1.0));
        assert_eq!(b.decode(&[0]), Some(0.0));
        assert_eq!(b.decode(&[2]), None);
        assert_eq!(b.encode(1.0), vec![1]);
    }

    #[test]
    fn every_type_in_every_order_decodes_and_encodes_known_images() {
        use Endianness::*;
        // (type, value, images in the order ABCD, CDAB, BADC, DCBA), worked
        // out by hand from the value's big-endian bytes.
        let cases: [(T, f64, [&[u16]; 4]); 6] = [
            (T::U16, 4660.0, [&[0x1234], &[0x1234], &[0x3412], &[0x3412]]),
            (T::I16, -2.0, [&[0xFFFE], &[0xFFFE], &[0xFEFF], &[0xFEFF]]),
            (
                T::I32,
                -70_000.0,
                [
                    &[0xFFFE, 0xEE90],
                    &[0xEE90, 0xFFFE],
                    &[0xFEFF, 0x90EE],
                    &[0x90EE, 0xFEFF],
                ],
            ),
            (
                T::F32,
                -1.5,
                [&[0xBFC0, 0], &[0, 0xBFC0], &[0xC0BF, 0], &[0, 0xC0BF]],
            ),
            (
                T::I64,
                -2.0,
                [
                    &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE],
                    &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
                    &[0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
                    &[0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
                ],
            ),
            (
                T::F64,
                -1.5,
                [
                    &[0xBFF8, 0, 0, 0],
                    &[0, 0, 0, 0xBFF8],
                    &[0xF8BF, 0, 0, 0],
                    &[0, 0, 0, 0xF8BF],
                ],
            ),
        ];
        for (data_type, value, images) in cases {
            for (order, image) in [Abcd, Cdab, Badc, Dcba].into_iter().zip(images) {
                let (b, w) = order.orders();
                let p = point(data_type, b, w);
                assert_eq!(p.decode(image), Some(value), "{data_type:?} {order:?}");
                assert_eq!(p.encode(value), image.to_vec(), "{data_type:?} {order:?}");
            }
        }
    }

    #[test]
    fn decodes_64_bit_values_in_all_four_orders() {
        // 0x0102_0304_0506_0700 (exact in an f64) as ABCDEFGH; the three other
        // orders as devices lay them out (CDAB reverses all four words).
        let v = 0x0102_0304_0506_0700u64 as f64;
        let cases = [
            (Endianness::Abcd, [0x0102, 0x0304, 0x0506, 0x0700]),
            (Endianness::Cdab, [0x0700, 0x0506, 0x0304, 0x0102]),
            (Endianness::Badc, [0x0201, 0x0403, 0x0605, 0x0007]),
            (Endianness::Dcba, [0x0007, 0x0605, 0x0403, 0x0201]),
        ];
        for (order, regs) in cases {
            let (b, w) = order.orders();
            assert_eq!(point(T::U64, b, w).decode(&regs), Some(v), "{order:?}");
            assert_eq!(point(T::U64, b, w).encode(v), regs.to_vec(), "{order:?}");
        }
        // -2 as i64 and -1.5 as f64 (0xBFF8_0000_0000_0000), word-swapped.
        let (b, w) = Endianness::Cdab.orders();
        assert_eq!(
            point(T::I64, b, w).decode(&[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
            Some(-2.0)
        );
        assert_eq!(point(T::F64, b, w).decode(&[0, 0, 0, 0xBFF8]), Some(-1.5));
        // 32-bit integers in every order: 0x1234_5678 = 305419896.
        let cases = [
            (Endianness::Abcd, [0x1234, 0x5678]),
            (Endianness::Cdab, [0x5678, 0x1234]),
            (Endianness::Badc, [0x3412, 0x7856]),
            (Endianness::Dcba, [0x7856, 0x3412]),
        ];
        for (order, regs) in cases {
            let (b, w) = order.orders();
            assert_eq!(
                point(T::U32, b, w).decode(&regs),
                Some(305419896.0),
                "{order:?}"
            );
            assert_eq!(
                point(T::I32, b, w).decode(&regs),
                Some(305419896.0),
                "{order:?}"
            );
        }
    }

    #[test]
    fn overlapping_points_are_refused() {
        let a = point(T::F32, B::Big, W::Big);
        let mut b = point(T::U16, B::Big, W::Big);
        b.sensor = SensorId::parse("T").unwrap();
        b.address = 1;
        assert!(matches!(
            RegisterMap::new(vec![a, b]),
            Err(RegisterMapError::Overlap(..))
        ));
    }
}
