//! Access control for the viewer page: a short PIN printed at start, session tokens, and a
//! per-address limit on wrong PINs. Pure logic: the caller passes the time (CLOCK_MONOTONIC
//! ns, the same in every process of the machine), the random bytes and the session key,
//! so this is tested on simulated time.
//!
//! Flow: the page posts the PIN to `/api/login`; a right PIN gets a token in an
//! `HttpOnly; Secure; SameSite=Strict` cookie, which the signalling and media endpoints
//! require; a wrong, expired or missing one gets HTTP 403.
//!
//! A token is [`TOKEN_LEN`] bytes as lowercase hex: its expiry (CLOCK_MONOTONIC ns, 8 bytes
//! big-endian), 16 bytes from the OS CSPRNG, and HMAC-SHA256 (aws-lc-rs) of those 24
//! bytes under the session key. The supervisor makes the key (32 bytes from the CSPRNG)
//! once per run and hands it to the web stage, so a restarted web stage still accepts the
//! sessions of the pages that were watching, while restarting vr-stream revokes every
//! session. The MAC is checked in constant time; nothing per session is stored. After
//! [`MAX_FAILURES`] wrong PINs in a row from one address, that address is refused (HTTP
//! 429) for [`BLOCK_NS`], doubling with each further block, so a 6-digit PIN (10⁶ values)
//! cannot be guessed from the LAN during a session.

use std::collections::HashMap;
use std::net::IpAddr;

/// Wrong PINs in a row from one address before it is blocked.
pub const MAX_FAILURES: u32 = 5;
/// First block, ns (30 s); each further block doubles it, up to 1 hour.
pub const BLOCK_NS: u64 = 30_000_000_000;
/// Longest block, ns (1 hour).
pub const MAX_BLOCK_NS: u64 = 3_600_000_000_000;
/// Length of a token, bytes (before hex): expiry 8 + random 16 + HMAC-SHA256 32.
pub const TOKEN_LEN: usize = 56;
/// Length of the session key, bytes.
pub const KEY_LEN: usize = 32;
/// Most client addresses whose failures are remembered: beyond it the entries of
/// addresses not blocked now are forgotten (memory stays bounded whatever the number of
/// addresses a peer sends from).
pub const MAX_ADDRESSES: usize = 4096;

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong or missing PIN (HTTP 403).
    WrongPin,
    /// Too many wrong PINs from this address: retry after this many ns (HTTP 429).
    Blocked {
        /// Time left in the block, ns.
        retry_after_ns: u64,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Failures {
    in_a_row: u32,
    blocks: u32,
    blocked_until_ns: u64,
}

/// The PIN, the session key and lifetime, and the failures per address.
pub struct Gate {
    pin: String,
    ttl_ns: u64,
    key: aws_lc_rs::hmac::Key,
    failures: HashMap<IpAddr, Failures>,
}

/// A 6-digit PIN from 8 random bytes (uniform to within 10⁻¹³).
pub fn pin_from(random: [u8; 8]) -> String {
    format!("{:06}", u64::from_le_bytes(random) % 1_000_000)
}

/// Bytes as lowercase hex (tokens, the session key in the web stage's environment).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lowercase or uppercase hex back to bytes; `None` if it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Compares in constant time for equal lengths (`subtle`; the length is not secret).
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Gate {
    /// A gate for `pin` (digits, as printed at start) whose tokens last `ttl`, signed
    /// with `key` (the run's session key).
    pub fn new(pin: String, ttl: std::time::Duration, key: &[u8; KEY_LEN]) -> Gate {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        Gate {
            pin,
            ttl_ns: ttl.as_nanos().min(u64::MAX as u128) as u64,
            key,
            failures: HashMap::new(),
        }
    }

    /// The token for a session expiring at `expiry_ns` (layout in the module doc).
    fn token(&self, expiry_ns: u64, random: [u8; 16]) -> String {
        let mut b = Vec::with_capacity(TOKEN_LEN);
        b.extend_from_slice(&expiry_ns.to_be_bytes());
        b.extend_from_slice(&random);
        let tag = aws_lc_rs::hmac::sign(&self.key, &b);
        b.extend_from_slice(tag.as_ref());
        hex(&b)
    }

    /// The PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// A login attempt from `addr` with `pin` at `now_ns`; `random` becomes the token if
    /// the PIN is right. Returns the token, or why not.
    pub fn login(
        &mut self,
        addr: IpAddr,
        pin: &str,
        now_ns: u64,
        random: [u8; 16],
    ) -> Result<String, Refusal> {
        if self.failures.len() >= MAX_ADDRESSES && !self.failures.contains_key(&addr) {
            self.failures.retain(|_, f| f.blocked_until_ns > now_ns);
        }
        let f = self.failures.entry(addr).or_default();
        if now_ns < f.blocked_until_ns {
            return Err(Refusal::Blocked {
                retry_after_ns: f.blocked_until_ns - now_ns,
            });
        }
        if !same(pin.trim(), &self.pin) {
            f.in_a_row += 1;
            if f.in_a_row >= MAX_FAILURES {
                let block = BLOCK_NS
                    .saturating_mul(1 << f.blocks.min(16))
                    .min(MAX_BLOCK_NS);
                f.blocks += 1;
                f.in_a_row = 0;
                f.blocked_until_ns = now_ns + block;
            }
            return Err(Refusal::WrongPin);
        }
        f.in_a_row = 0;
        Ok(self.token(now_ns.saturating_add(self.ttl_ns), random))
    }

    /// Whether `token` was made by [`Gate::login`] under this run's key and has not
    /// expired at `now_ns` (the MAC is verified in constant time by aws-lc-rs).
    pub fn allows(&self, token: &str, now_ns: u64) -> bool {
        let Some(b) = unhex(token).filter(|b| b.len() == TOKEN_LEN) else {
            return false;
        };
        let (data, tag) = b.split_at(24);
        let expiry = u64::from_be_bytes(data[..8].try_into().unwrap_or_default());
        aws_lc_rs::hmac::verify(&self.key, data, tag).is_ok() && expiry > now_ns
    }

    /// The session lifetime, s (the cookie's Max-Age).
    pub fn ttl_s(&self) -> u64 {
        self.ttl_ns / 1_000_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: std::time::Duration = std::time::Duration::from_secs(3600);
    const KEY: [u8; KEY_LEN] = [9; KEY_LEN];

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, n])
    }

    #[test]
    fn right_pin_gets_a_token_that_is_allowed_wrong_pin_and_forged_tokens_are_not() {
        let mut g = Gate::new("042137".into(), TTL, &KEY);
        assert_eq!(g.login(ip(2), "000000", 0, [1; 16]), Err(Refusal::WrongPin));
        assert_eq!(g.login(ip(2), "", 0, [1; 16]), Err(Refusal::WrongPin));
        assert_eq!(
            g.login(ip(2), "42137", 0, [1; 16]),
            Err(Refusal::WrongPin),
            "leading zero matters"
        );
        let t = g.login(ip(2), " 042137\n", 0, [0xab; 16]).unwrap();
        assert_eq!(t.len(), 2 * TOKEN_LEN);
        assert!(
            t[16..48] == "ab".repeat(16),
            "expiry, then the random bytes: {t}"
        );
        assert!(g.allows(&t, 0));
        assert!(!g.allows("", 0));
        assert!(!g.allows(&"ac".repeat(TOKEN_LEN), 0));
        assert!(!g.allows(&t[..2 * TOKEN_LEN - 2], 0));
        // One bit of the expiry changed (a later one): the MAC no longer matches.
        let mut later = t.clone();
        later.replace_range(0..2, "ff");
        assert!(!g.allows(&later, 0));
        // Another run's key: refused; the same key (a restarted web stage): accepted.
        assert!(!Gate::new("042137".into(), TTL, &[8; KEY_LEN]).allows(&t, 0));
        assert!(Gate::new("042137".into(), TTL, &KEY).allows(&t, 0));
    }

    #[test]
    fn a_token_expires_after_the_ttl() {
        let mut g = Gate::new("1234".into(), std::time::Duration::from_secs(2), &KEY);
        let t = g.login(ip(3), "1234", 1_000, [7; 16]).unwrap();
        assert!(g.allows(&t, 1_000 + 1_999_999_999));
        assert!(!g.allows(&t, 1_000 + 2_000_000_000), "expired at the TTL");
        assert_eq!(g.ttl_s(), 2);
    }

    #[test]
    fn the_failure_table_stays_bounded() {
        let mut g = Gate::new("1234".into(), TTL, &KEY);
        for i in 0..(MAX_ADDRESSES as u32 * 3) {
            let _ = g.login(IpAddr::from(i.to_be_bytes()), "0000", 0, [0; 16]);
        }
        assert!(g.failures.len() <= MAX_ADDRESSES);
    }

    #[test]
    fn five_wrong_pins_block_the_address_for_30_s_then_60_s_others_unaffected() {
        let mut g = Gate::new("123456".into(), TTL, &KEY);
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                g.login(ip(9), "111111", 1_000, [0; 16]),
                Err(Refusal::WrongPin)
            );
        }
        // Blocked, even with the right PIN.
        assert_eq!(
            g.login(ip(9), "123456", 2_000, [0; 16]),
            Err(Refusal::Blocked {
                retry_after_ns: BLOCK_NS - 1_000
            })
        );
        // Another address is not.
        assert!(g.login(ip(10), "123456", 2_000, [3; 16]).is_ok());
        // After the block: allowed again; the next five failures block for twice as long.
        let t = 1_000 + BLOCK_NS;
        assert!(g.login(ip(9), "123456", t, [4; 16]).is_ok());
        for _ in 0..MAX_FAILURES {
            let _ = g.login(ip(9), "000000", t, [0; 16]);
        }
        assert_eq!(
            g.login(ip(9), "123456", t, [0; 16]),
            Err(Refusal::Blocked {
                retry_after_ns: 2 * BLOCK_NS
            })
        );
    }

    #[test]
    fn pins_are_six_digits() {
        assert_eq!(pin_from([0; 8]), "000000");
        assert_eq!(
            pin_from(u64::MAX.to_le_bytes()),
            format!("{:06}", u64::MAX % 1_000_000)
        );
    }
}
