//! Modbus application PDUs and their two framings on a byte stream: MBAP
//! (Modbus TCP) and RTU (address + PDU + CRC-16, as serial gateways forward
//! it over TCP). Both the client and the simulator use it, so that every byte
//! either side sends or accepts is checked in one place.
//!
//! Decoding never trusts the peer: lengths are checked before slicing, a
//! response is matched against the request it answers (function, byte count,
//! echoed address and value), and anything else is an error, not a value.

use crate::register::{MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ};

/// Most registers one write may carry (specification: 123).
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Most coils one write may carry (specification: 1968).
pub const MAX_WRITE_BITS: u16 = 1968;

/// Longest RTU frame (address, 253-byte PDU, CRC).
const MAX_RTU_FRAME: usize = 256;

/// Exception code: the function is not supported.
pub const ILLEGAL_FUNCTION: u8 = 0x01;
/// Exception code: the address range is not served.
pub const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
/// Exception code: a value in the request is not allowed.
pub const ILLEGAL_DATA_VALUE: u8 = 0x03;
/// Exception code: the device failed while serving.
pub const SERVER_DEVICE_FAILURE: u8 = 0x04;
/// Exception code: the device is busy; retry later.
pub const SERVER_DEVICE_BUSY: u8 = 0x06;
/// Exception code: a gateway found no path to the unit.
pub const GATEWAY_PATH_UNAVAILABLE: u8 = 0x0A;
/// Exception code: the unit behind a gateway did not answer.
pub const GATEWAY_TARGET_FAILED: u8 = 0x0B;

/// The name of an exception code, for errors and logs.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        ILLEGAL_FUNCTION => "illegal function",
        ILLEGAL_DATA_ADDRESS => "illegal data address",
        ILLEGAL_DATA_VALUE => "illegal data value",
        SERVER_DEVICE_FAILURE => "server device failure",
        0x05 => "acknowledge",
        SERVER_DEVICE_BUSY => "server device busy",
        0x08 => "memory parity error",
        GATEWAY_PATH_UNAVAILABLE => "gateway path unavailable",
        GATEWAY_TARGET_FAILED => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// One request, as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// 0x01.
    ReadCoils {
        /// First coil.
        start: u16,
        /// Number of coils.
        count: u16,
    },
    /// 0x02.
    ReadDiscreteInputs {
        /// First input.
        start: u16,
        /// Number of inputs.
        count: u16,
    },
    /// 0x03.
    ReadHoldingRegisters {
        /// First register.
        start: u16,
        /// Number of registers.
        count: u16,
    },
    /// 0x04.
    ReadInputRegisters {
        /// First register.
        start: u16,
        /// Number of registers.
        count: u16,
    },
    /// 0x05.
    WriteSingleCoil {
        address: u16,
        /// New state.
        value: bool,
    },
    /// 0x06.
    WriteSingleRegister {
        address: u16,
        /// New value.
        value: u16,
    },
    /// 0x0F.
    WriteMultipleCoils {
        /// First coil.
        start: u16,
        /// New states.
        values: Vec<bool>,
    },
    /// 0x10.
    WriteMultipleRegisters {
        /// First register.
        start: u16,
        /// New values.
        values: Vec<u16>,
    },
}

/// A normal (non-exception) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Answer to 0x01 / 0x02: exactly the requested number of bits.
    Bits(Vec<bool>),
    /// Answer to 0x03 / 0x04: exactly the requested number of registers.
    Registers(Vec<u16>),
    /// Answer to a write: the device confirmed it.
    Written,
}

/// What the server answers: a response or an exception code.
pub type Answer = Result<Response, u8>;

/// Why bytes from the peer could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream is out of step (bad protocol id, length or CRC, unknown
    /// function): nothing after it on this connection can be trusted.
    #[error("garbled frame: {0}")]
    Garbled(String),
    /// A well-framed answer that does not answer the request (short, wrong
    /// function, wrong echo): this answer is dropped, the stream is intact.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl Response {
    /// What a read returned as 16-bit words, bits as 0/1 (a write's answer,
    /// which `decode_answer` never gives a read, has none).
    pub fn into_words(self) -> Vec<u16> {
        match self {
            Response::Registers(words) => words,
            Response::Bits(bits) => bits.into_iter().map(u16::from).collect(),
            Response::Written => Vec::new(),
        }
    }
}

impl Request {
    /// The function code.
    pub fn function(&self) -> u8 {
        match self {
            Request::ReadCoils { .. } => 0x01,
            Request::ReadDiscreteInputs { .. } => 0x02,
            Request::ReadHoldingRegisters { .. } => 0x03,
            Request::ReadInputRegisters { .. } => 0x04,
            Request::WriteSingleCoil { .. } => 0x05,
            Request::WriteSingleRegister { .. } => 0x06,
            Request::WriteMultipleCoils { .. } => 0x0F,
            Request::WriteMultipleRegisters { .. } => 0x10,
        }
    }

    /// Appends the request's PDU to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.function());
        match self {
            Request::ReadCoils { start, count }
            | Request::ReadDiscreteInputs { start, count }
            | Request::ReadHoldingRegisters { start, count }
            | Request::ReadInputRegisters { start, count } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
            }
            Request::WriteSingleCoil { address, value } => {
                out.extend_from_slice(&address.to_be_bytes());
                out.extend_from_slice(&coil_word(*value).to_be_bytes());
            }
            Request::WriteSingleRegister { address, value } => {
                out.extend_from_slice(&address.to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
            Request::WriteMultipleCoils { start, values } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&(values.len() as u16).to_be_bytes());
                let packed = pack_bits(values);
                out.push(packed.len() as u8);
                out.extend_from_slice(&packed);
            }
            Request::WriteMultipleRegisters { start, values } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&(values.len() as u16).to_be_bytes());
                out.push((values.len() * 2) as u8);
                for v in values {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
    }

    /// Parses a request PDU (server side). An unknown function is
    /// `Err(ILLEGAL_FUNCTION)`; a bad quantity or length `Err(ILLEGAL_DATA_VALUE)`,
    /// as the specification orders.
    pub fn decode(pdu: &[u8]) -> Result<Request, u8> {
        let (&function, body) = pdu.split_first().ok_or(ILLEGAL_FUNCTION)?;
        let word = |i: usize| -> Result<u16, u8> {
            body.get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or(ILLEGAL_DATA_VALUE)
        };
        let read = |max: u16| -> Result<(u16, u16), u8> {
            if body.len() != 4 {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let (start, count) = (word(0)?, word(2)?);
            if count == 0 || count > max {
                return Err(ILLEGAL_DATA_VALUE);
            }
            Ok((start, count))
        };
        match function {
            0x01 => {
                read(MAX_BITS_PER_READ).map(|(start, count)| Request::ReadCoils { start, count })
            }
            0x02 => read(MAX_BITS_PER_READ)
                .map(|(start, count)| Request::ReadDiscreteInputs { start, count }),
            0x03 => read(MAX_REGISTERS_PER_READ)
                .map(|(start, count)| Request::ReadHoldingRegisters { start, count }),
            0x04 => read(MAX_REGISTERS_PER_READ)
                .map(|(start, count)| Request::ReadInputRegisters { start, count }),
            0x05 => {
                if body.len() != 4 {
                    return Err(ILLEGAL_DATA_VALUE);
                }
                let value = match word(2)? {
                    0xFF00 => true,
                    0x0000 => false,
                    _ => return Err(ILLEGAL_DATA_VALUE),
                };
                Ok(Request::WriteSingleCoil {
                    address: word(0)?,
                    value,
                })
            }
            0x06 => {
                if body.len() != 4 {
                    return Err(ILLEGAL_DATA_VALUE);
                }
                Ok(Request::WriteSingleRegister {
                    address: word(0)?,
                    value: word(2)?,
                })
            }
            0x0F => {
                let (start, count) = (word(0)?, word(2)?);
                let bytes = *body.get(4).ok_or(ILLEGAL_DATA_VALUE)? as usize;
                if count == 0
                    || count > MAX_WRITE_BITS
                    || bytes != (count as usize).div_ceil(8)
                    || body.len() != 5 + bytes
                {
                    return Err(ILLEGAL_DATA_VALUE);
                }
                let mut values = unpack_bits(&body[5..]);
                values.truncate(count as usize);
                Ok(Request::WriteMultipleCoils { start, values })
            }
            0x10 => {
                let (start, count) = (word(0)?, word(2)?);
                let bytes = *body.get(4).ok_or(ILLEGAL_DATA_VALUE)? as usize;
                if count == 0
                    || count > MAX_WRITE_REGISTERS
                    || bytes != count as usize * 2
                    || body.len() != 5 + bytes
                {
                    return Err(ILLEGAL_DATA_VALUE);
                }
                let values = body[5..]
                    .chunks_exact(2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .collect();
                Ok(Request::WriteMultipleRegisters { start, values })
            }
            _ => Err(ILLEGAL_FUNCTION),
        }
    }

    /// Encodes the server's answer to this request as a PDU (server side).
    /// `Response::Bits` / `Registers` are sent as given, even when their
    /// length does not match the request: the simulator uses that to send
    /// short answers on purpose.
    pub fn encode_answer(&self, answer: &Answer, out: &mut Vec<u8>) {
        let function = self.function();
        match answer {
            Err(code) => {
                out.push(function | 0x80);
                out.push(*code);
            }
            Ok(Response::Bits(bits)) => {
                out.push(function);
                let packed = pack_bits(bits);
                out.push(packed.len() as u8);
                out.extend_from_slice(&packed);
            }
            Ok(Response::Registers(words)) => {
                out.push(function);
                out.push((words.len() * 2) as u8);
                for w in words {
                    out.extend_from_slice(&w.to_be_bytes());
                }
            }
            Ok(Response::Written) => {
                // A write's answer echoes the request's first four bytes.
                let mut pdu = Vec::with_capacity(8);
                self.encode(&mut pdu);
                out.extend_from_slice(&pdu[..5.min(pdu.len())]);
            }
        }
    }

    /// Checks a response PDU against this request (client side).
    /// `Ok(Err(code))` is a well-formed exception.
    pub fn decode_answer(&self, pdu: &[u8]) -> Result<Answer, FrameError> {
        let malformed = |what: String| Err(FrameError::Malformed(what));
        let Some((&function, body)) = pdu.split_first() else {
            return malformed("empty response".into());
        };
        if function == self.function() | 0x80 {
            return match body {
                [code] => Ok(Err(*code)),
                _ => malformed(format!("exception of {} bytes", body.len())),
            };
        }
        if function != self.function() {
            return malformed(format!(
                "function 0x{function:02X} answers a request of 0x{:02X}",
                self.function()
            ));
        }
        match self {
            Request::ReadCoils { count, .. } | Request::ReadDiscreteInputs { count, .. } => {
                let want = (*count as usize).div_ceil(8);
                match body.split_first() {
                    Some((&bytes, data)) if bytes as usize == want && data.len() == want => {
                        let mut bits = unpack_bits(data);
                        bits.truncate(*count as usize);
                        Ok(Ok(Response::Bits(bits)))
                    }
                    Some((&bytes, _)) => malformed(format!(
                        "short response: {bytes} bytes of bits where {want} were asked for"
                    )),
                    None => malformed("no byte count".into()),
                }
            }
            Request::ReadHoldingRegisters { count, .. }
            | Request::ReadInputRegisters { count, .. } => match body.split_first() {
                Some((&bytes, data)) if bytes as usize == data.len() && bytes % 2 == 0 => {
                    if bytes as usize != *count as usize * 2 {
                        return malformed(format!(
                            "short response: {} of {count} registers",
                            bytes / 2
                        ));
                    }
                    Ok(Ok(Response::Registers(
                        data.chunks_exact(2)
                            .map(|b| u16::from_be_bytes([b[0], b[1]]))
                            .collect(),
                    )))
                }
                Some((&bytes, data)) => malformed(format!(
                    "byte count {bytes} with {} bytes of data",
                    data.len()
                )),
                None => malformed("no byte count".into()),
            },
            _ => {
                let mut sent = Vec::with_capacity(8);
                self.encode(&mut sent);
                if body.len() == 4 && body == &sent[1..5] {
                    Ok(Ok(Response::Written))
                } else {
                    malformed(format!(
                        "the write's echo {body:02X?} differs from the request {:02X?}",
                        &sent[1..5]
                    ))
                }
            }
        }
    }
}

fn coil_word(value: bool) -> u16 {
    if value {
        0xFF00
    } else {
        0x0000
    }
}

/// Packs bits LSB first, as Modbus does.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

fn unpack_bits(bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .flat_map(|byte| (0..8).map(move |i| byte & (1 << i) != 0))
        .collect()
}

/// How frames are delimited on the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Modbus TCP: the MBAP header (transaction id, protocol 0, length, unit).
    #[default]
    Tcp,
    /// RTU frames (unit, PDU, CRC-16) carried over TCP, as serial gateways do.
    RtuOverTcp,
}

/// A frame taken off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// MBAP transaction id (0 for RTU, which has none).
    pub transaction: u16,
    /// Unit (slave) id.
    pub unit: u8,
    /// Function code and data, without the framing's header or CRC.
    pub pdu: Vec<u8>,
}

impl Framing {
    /// The protocol's name in configuration and APIs.
    pub fn protocol(self) -> &'static str {
        match self {
            Framing::Tcp => "modbus_tcp",
            Framing::RtuOverTcp => "modbus_rtu_over_tcp",
        }
    }

    /// Appends one frame to `out`.
    pub fn encode(self, transaction: u16, unit: u8, pdu: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::Tcp => {
                out.extend_from_slice(&transaction.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
                out.push(unit);
                out.extend_from_slice(pdu);
            }
            Framing::RtuOverTcp => {
                let from = out.len();
                out.push(unit);
                out.extend_from_slice(pdu);
                let crc = crc16(&out[from..]);
                out.extend_from_slice(&crc.to_le_bytes());
            }
        }
    }

    /// Takes one complete frame off the front of `buf`; `Ok(None)` when more
    /// bytes are needed. `response` says which side is reading: RTU frames
    /// carry no length, so it is inferred from the function code, which
    /// differs between requests and responses.
    pub fn take(self, buf: &mut Vec<u8>, response: bool) -> Result<Option<Frame>, FrameError> {
        match self {
            Framing::Tcp => take_mbap(buf),
            Framing::RtuOverTcp => take_rtu(buf, response),
        }
    }
}

fn take_mbap(buf: &mut Vec<u8>) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let transaction = u16::from_be_bytes([buf[0], buf[1]]);
    let protocol = u16::from_be_bytes([buf[2], buf[3]]);
    let length = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    if protocol != 0 {
        return Err(FrameError::Garbled(format!(
            "protocol id {protocol}, not 0"
        )));
    }
    if !(2..=254).contains(&length) {
        return Err(FrameError::Garbled(format!("MBAP length {length}")));
    }
    if buf.len() < 6 + length {
        return Ok(None);
    }
    let unit = buf[6];
    let pdu = buf[7..6 + length].to_vec();
    buf.drain(..6 + length);
    Ok(Some(Frame {
        transaction,
        unit,
        pdu,
    }))
}

fn take_rtu(buf: &mut Vec<u8>, response: bool) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let function = buf[1];
    let byte_at = |i: usize| buf.get(i).map(|&b| b as usize);
    let length = if function & 0x80 != 0 {
        Some(5)
    } else {
        match (function, response) {
            (0x01..=0x04, true) => byte_at(2).map(|n| 3 + n + 2),
            (0x01..=0x06, false) | (0x05 | 0x06 | 0x0F | 0x10, true) => Some(8),
            (0x0F | 0x10, false) => byte_at(6).map(|n| 7 + n + 2),
            _ => {
                return Err(FrameError::Garbled(format!(
                    "function 0x{function:02X} cannot be framed"
                )))
            }
        }
    };
    let Some(length) = length else {
        return Ok(None);
    };
    if length > MAX_RTU_FRAME {
        return Err(FrameError::Garbled(format!("RTU frame of {length} bytes")));
    }
    if buf.len() < length {
        return Ok(None);
    }
    let crc = u16::from_le_bytes([buf[length - 2], buf[length - 1]]);
    if crc != crc16(&buf[..length - 2]) {
        return Err(FrameError::Garbled("CRC mismatch".into()));
    }
    let frame = Frame {
        transaction: 0,
        unit: buf[0],
        pdu: buf[1..length - 2].to_vec(),
    };
    buf.drain(..length);
    Ok(Some(frame))
}

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= b as u16;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_specifications_example() {
        // Modbus over serial line, appendix: 02 07 → CRC 0x1241 (sent 41 12).
        assert_eq!(crc16(&[0x02, 0x07]), 0x1241);
        // A read of 10 holding registers from unit 1 at 0: 01 03 00 00 00 0A C5 CD.
        assert_eq!(
            crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]).to_le_bytes(),
            [0xC5, 0xCD]
        );
    }

    #[test]
    fn requests_round_trip_through_both_framings() {
        let requests = [
            Request::ReadCoils {
                start: 3,
                count: 19,
            },
            Request::ReadDiscreteInputs { start: 0, count: 8 },
            Request::ReadHoldingRegisters {
                start: 100,
                count: 125,
            },
            Request::ReadInputRegisters { start: 7, count: 1 },
            Request::WriteSingleCoil {
                address: 9,
                value: true,
            },
            Request::WriteSingleRegister {
                address: 1000,
                value: 0xBEEF,
            },
            Request::WriteMultipleCoils {
                start: 2,
                values: vec![true, false, true, true, false, false, true, false, true],
            },
            Request::WriteMultipleRegisters {
                start: 1100,
                values: vec![1, 2, 0xFFFF],
            },
        ];
        for framing in [Framing::Tcp, Framing::RtuOverTcp] {
            for (i, req) in requests.iter().enumerate() {
                let mut pdu = Vec::new();
                req.encode(&mut pdu);
                let mut wire = Vec::new();
                framing.encode(i as u16, 17, &pdu, &mut wire);
                // Delivered one byte at a time, the frame appears only when whole.
                let mut buf = Vec::new();
                let mut frame = None;
                for &b in &wire {
                    assert!(frame.is_none(), "{framing:?} {req:?}: frame before its end");
                    buf.push(b);
                    frame = framing.take(&mut buf, false).unwrap();
                }
                let frame = frame.unwrap();
                assert!(buf.is_empty());
                assert_eq!(frame.unit, 17);
                assert_eq!(Request::decode(&frame.pdu).as_ref(), Ok(req), "{framing:?}");
            }
        }
    }

    #[test]
    fn answers_are_checked_against_their_request() {
        let read = Request::ReadHoldingRegisters { start: 0, count: 3 };
        let mut pdu = Vec::new();
        read.encode_answer(&Ok(Response::Registers(vec![1, 2, 3])), &mut pdu);
        assert_eq!(pdu, [0x03, 6, 0, 1, 0, 2, 0, 3]);
        assert_eq!(
            read.decode_answer(&pdu),
            Ok(Ok(Response::Registers(vec![1, 2, 3])))
        );

        // Two registers where three were asked for: never decoded.
        let mut short = Vec::new();
        read.encode_answer(&Ok(Response::Registers(vec![1, 2])), &mut short);
        assert!(
            matches!(read.decode_answer(&short), Err(FrameError::Malformed(m)) if m.contains("2 of 3"))
        );
        // A byte count that lies about the data.
        assert!(read.decode_answer(&[0x03, 6, 0, 1]).is_err());
        // Another function's answer.
        assert!(read.decode_answer(&[0x04, 2, 0, 1]).is_err());
        // An exception.
        assert_eq!(
            read.decode_answer(&[0x83, 0x02]),
            Ok(Err(ILLEGAL_DATA_ADDRESS))
        );

        let coils = Request::ReadCoils {
            start: 0,
            count: 10,
        };
        let mut pdu = Vec::new();
        let bits: Vec<bool> = (0..10).map(|i| i % 3 == 0).collect();
        coils.encode_answer(&Ok(Response::Bits(bits.clone())), &mut pdu);
        assert_eq!(pdu, [0x01, 2, 0b0100_1001, 0b10]);
        assert_eq!(coils.decode_answer(&pdu), Ok(Ok(Response::Bits(bits))));
        assert!(coils.decode_answer(&[0x01, 1, 0xFF]).is_err());

        let write = Request::WriteSingleRegister {
            address: 5,
            value: 7,
        };
        let mut echo = Vec::new();
        write.encode_answer(&Ok(Response::Written), &mut echo);
        assert_eq!(write.decode_answer(&echo), Ok(Ok(Response::Written)));
        assert!(write.decode_answer(&[0x06, 0, 5, 0, 8]).is_err());
        let write = Request::WriteMultipleRegisters {
            start: 5,
            values: vec![1, 2],
        };
        let mut echo = Vec::new();
        write.encode_answer(&Ok(Response::Written), &mut echo);
        assert_eq!(echo, [0x10, 0, 5, 0, 2]);
        assert_eq!(write.decode_answer(&echo), Ok(Ok(Response::Written)));
    }

    #[test]
    fn bad_requests_get_the_specified_exception() {
        assert_eq!(Request::decode(&[0x2B, 0x0E]), Err(ILLEGAL_FUNCTION));
        assert_eq!(
            Request::decode(&[0x03, 0, 0, 0, 126]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            Request::decode(&[0x03, 0, 0, 0, 0]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            Request::decode(&[0x05, 0, 0, 0x12, 0x34]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            Request::decode(&[0x10, 0, 0, 0, 2, 4, 0, 1]),
            Err(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(Request::decode(&[]), Err(ILLEGAL_FUNCTION));
    }

    /// xorshift64*: the same cases on every run, no crate needed.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn word(&mut self) -> u16 {
            self.next() as u16
        }

        fn bit(&mut self) -> bool {
            self.next() & 1 == 1
        }

        /// Any valid request.
        fn request(&mut self) -> Request {
            let start = self.word();
            let roll = self.next();
            let count = |max: u16| 1 + (roll % max as u64) as u16;
            match self.below(8) {
                0 => Request::ReadCoils {
                    start,
                    count: count(MAX_BITS_PER_READ),
                },
                1 => Request::ReadDiscreteInputs {
                    start,
                    count: count(MAX_BITS_PER_READ),
                },
                2 => Request::ReadHoldingRegisters {
                    start,
                    count: count(MAX_REGISTERS_PER_READ),
                },
                3 => Request::ReadInputRegisters {
                    start,
                    count: count(MAX_REGISTERS_PER_READ),
                },
                4 => Request::WriteSingleCoil {
                    address: start,
                    value: self.bit(),
                },
                5 => Request::WriteSingleRegister {
                    address: start,
                    value: self.word(),
                },
                6 => {
                    let n = count(MAX_WRITE_BITS);
                    Request::WriteMultipleCoils {
                        start,
                        values: (0..n).map(|_| self.bit()).collect(),
                    }
                }
                _ => {
                    let n = count(MAX_WRITE_REGISTERS);
                    Request::WriteMultipleRegisters {
                        start,
                        values: (0..n).map(|_| self.word()).collect(),
                    }
                }
            }
        }

        /// A right answer to `request`: data or an exception.
        fn answer(&mut self, request: &Request) -> Answer {
            if self.below(4) == 0 {
                return Err(1 + self.below(11) as u8);
            }
            Ok(match request {
                Request::ReadCoils { count, .. } | Request::ReadDiscreteInputs { count, .. } => {
                    Response::Bits((0..*count).map(|_| self.bit()).collect())
                }
                Request::ReadHoldingRegisters { count, .. }
                | Request::ReadInputRegisters { count, .. } => {
                    Response::Registers((0..*count).map(|_| self.word()).collect())
                }
                _ => Response::Written,
            })
        }

        /// The bytes as they are half the time, otherwise with one byte
        /// changed, one cut off or one added.
        fn mangle(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
            let at = self.below(bytes.len().max(1) as u64) as usize;
            match self.below(6) {
                0 if !bytes.is_empty() => bytes[at] ^= 1 + self.below(255) as u8,
                1 => bytes.truncate(at),
                2 => bytes.insert(at.min(bytes.len()), self.next() as u8),
                _ => {}
            }
            bytes
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_whatever_decodes_is_exactly_what_was_sent() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let (mut requests_taken, mut answers_taken, mut frames_taken) = (0, 0, 0);
        for _ in 0..20_000 {
            let request = noise.request();
            let mut pdu = Vec::new();
            request.encode(&mut pdu);
            let pdu = noise.mangle(pdu);
            if let Ok(decoded) = Request::decode(&pdu) {
                requests_taken += 1;
                let mut again = Vec::new();
                decoded.encode(&mut again);
                if matches!(decoded, Request::WriteMultipleCoils { .. }) {
                    // Padding bits of the last byte are not kept.
                    assert_eq!(again.len(), pdu.len(), "{pdu:02X?}");
                } else {
                    assert_eq!(again, pdu, "a request decoded from other bytes");
                }
            }

            let answer = noise.answer(&request);
            let mut reply = Vec::new();
            request.encode_answer(&answer, &mut reply);
            let reply = noise.mangle(reply);
            if let Ok(decoded) = request.decode_answer(&reply) {
                answers_taken += 1;
                let mut again = Vec::new();
                request.encode_answer(&decoded, &mut again);
                match decoded {
                    Ok(Response::Bits(bits)) => {
                        let (Request::ReadCoils { count, .. }
                        | Request::ReadDiscreteInputs { count, .. }) = request
                        else {
                            panic!("bits answer {request:?}");
                        };
                        assert_eq!(bits.len(), count as usize);
                        assert_eq!(again.len(), reply.len());
                    }
                    _ => assert_eq!(again, reply, "an answer decoded from other bytes"),
                }
            }

            // The same bytes framed, mangled again, as a stream to each side.
            for framing in [Framing::Tcp, Framing::RtuOverTcp] {
                for (body, response) in [(&pdu, false), (&reply, true)] {
                    let mut wire = Vec::new();
                    framing.encode(noise.word(), noise.below(248) as u8, body, &mut wire);
                    let mut stream = noise.mangle(wire);
                    loop {
                        let before = stream.clone();
                        let Ok(Some(frame)) = framing.take(&mut stream, response) else {
                            break;
                        };
                        frames_taken += 1;
                        let used = before.len() - stream.len();
                        assert!(used > 0, "a frame taken from nothing");
                        let mut again = Vec::new();
                        framing.encode(frame.transaction, frame.unit, &frame.pdu, &mut again);
                        assert_eq!(again, before[..used], "a frame from other bytes");
                    }
                }
            }
        }
        // The cases reach the decoders, not only their first check.
        assert!(requests_taken > 5_000, "{requests_taken}");
        assert!(answers_taken > 5_000, "{answers_taken}");
        assert!(frames_taken > 20_000, "{frames_taken}");
    }

    #[test]
    fn every_single_byte_error_in_an_rtu_frame_is_caught() {
        let mut noise = Noise(0xD1B5_4A32_D192_ED03);
        for _ in 0..20_000 {
            let request = noise.request();
            let answer = noise.answer(&request);
            let response = noise.bit();
            let mut pdu = Vec::new();
            if response {
                request.encode_answer(&answer, &mut pdu);
            } else {
                request.encode(&mut pdu);
            }
            let mut wire = Vec::new();
            Framing::RtuOverTcp.encode(0, noise.below(248) as u8, &pdu, &mut wire);
            let length = wire.len();
            let at = noise.below(length as u64) as usize;
            wire[at] ^= 1 + noise.below(255) as u8;
            // CRC-16 catches every error within 16 bits, so the frame is
            // never taken as itself; a changed function or byte count may
            // make it look shorter or longer, never right.
            if let Ok(Some(_)) = Framing::RtuOverTcp.take(&mut wire, response) {
                assert_ne!(
                    length - wire.len(),
                    length,
                    "byte {at} of {pdu:02X?} changed, and the frame was taken"
                );
            }
        }
    }

    #[test]
    fn broken_streams_are_garbled_not_decoded() {
        let mut buf = vec![0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1];
        assert!(matches!(take_mbap(&mut buf), Err(FrameError::Garbled(_))));
        let mut buf = vec![0, 1, 0, 0, 0xFF, 0xFF, 1];
        assert!(matches!(take_mbap(&mut buf), Err(FrameError::Garbled(_))));
        let mut wire = Vec::new();
        Framing::RtuOverTcp.encode(0, 1, &[0x03, 2, 0, 9], &mut wire);
        *wire.last_mut().unwrap() ^= 0xFF;
        assert_eq!(
            Framing::RtuOverTcp.take(&mut wire, true),
            Err(FrameError::Garbled("CRC mismatch".into()))
        );
    }
}
