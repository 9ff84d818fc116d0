//! Who uses the shop, on which devices, and on which days.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::FaultRates;

/// SplitMix64's finalizer: a cheap bijective mixer, used where a full RNG per
/// decision would be too slow (daily activity of every live user).
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Randomness keyed by `(seed, user)`, so any user's day can be generated
/// without replaying anyone else's.
pub(crate) struct Keys {
    master: [u64; 4],
}

/// ChaCha stream of a user's profile; day streams are `day * 8 + slot`.
const PROFILE_STREAM: u64 = u64::MAX;
const PLAN_SLOT: u64 = 7;

impl Keys {
    pub(crate) fn new(seed: u64) -> Self {
        let mut root = ChaCha8Rng::seed_from_u64(seed);
        Self {
            master: root.random(),
        }
    }

    pub(crate) fn rng(&self, user: u64, stream: u64) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
            let word = mix64(self.master[i] ^ mix64(user.wrapping_add(i as u64)));
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream);
        rng
    }

    fn unit(&self, user: u64, day: u64) -> f64 {
        let h = mix64(self.master[0] ^ mix64(user) ^ mix64(day ^ 0xDA7E_0000_0000));
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A bijection of the user index, so user ids are unique but not sequential.
    pub(crate) fn user_hash(&self, user: u64) -> u64 {
        mix64(user ^ self.master[1])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Web,
    Ios,
    Android,
}

pub(crate) struct Device {
    pub platform: Platform,
    pub anon: u128,
    pub skew_ms: i64,
    pub ip: u32,
    pub model: u8,
    pub version: u8,
    /// First day this device is used; a second device shows up later.
    pub from_day: u64,
    /// Whether this device has sent an identify (so it carries the userId).
    pub logged_in: bool,
}

/// What delivery needs to know about the sending device.
#[derive(Clone, Copy)]
pub(crate) struct DeviceInfo {
    pub mobile: bool,
    pub skew_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Free,
    Pro,
    Business,
}

impl Plan {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Business => "business",
        }
    }
}

pub(crate) struct Country {
    pub code: &'static str,
    pub timezone: &'static str,
    pub offset_min: i64,
    pub locale: &'static str,
    weight: u32,
}

const fn c(
    code: &'static str,
    timezone: &'static str,
    offset_min: i64,
    locale: &'static str,
    weight: u32,
) -> Country {
    Country {
        code,
        timezone,
        offset_min,
        locale,
        weight,
    }
}

const COUNTRIES: [Country; 11] = [
    c("US", "America/New_York", -300, "en-US", 25),
    c("US", "America/Los_Angeles", -480, "en-US", 12),
    c("GB", "Europe/London", 0, "en-GB", 10),
    c("DE", "Europe/Berlin", 60, "de-DE", 10),
    c("FR", "Europe/Paris", 60, "fr-FR", 7),
    c("BR", "America/Sao_Paulo", -180, "pt-BR", 7),
    c("IN", "Asia/Kolkata", 330, "en-IN", 8),
    c("JP", "Asia/Tokyo", 540, "ja-JP", 6),
    c("AU", "Australia/Sydney", 600, "en-AU", 5),
    c("CA", "America/Toronto", -300, "en-CA", 5),
    c("NL", "Europe/Amsterdam", 60, "nl-NL", 5),
];

pub(crate) const FIRST_NAMES: [&str; 16] = [
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Finn", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam",
    "Maya", "Noah", "Olga", "Priya",
];
pub(crate) const LAST_NAMES: [&str; 16] = [
    "Silva", "Schmidt", "Tanaka", "Okafor", "Martin", "Kowalski", "Nguyen", "Rossi", "Patel",
    "Garcia", "Jensen", "Dubois", "Murphy", "Costa", "Larsen", "Weber",
];
pub(crate) const DOMAINS: [(&str, &str); 5] = [
    ("gmail.com", "gmial.com"),
    ("outlook.com", "outlok.com"),
    ("yahoo.com", "yaho.com"),
    ("icloud.com", "icloud.co"),
    ("proton.me", "proton.mee"),
];

/// First octets of ordinary consumer address space, so fake IPs never look
/// private, multicast or reserved.
const PUBLIC_OCTETS: [u8; 12] = [24, 37, 45, 62, 73, 81, 92, 98, 104, 142, 176, 185];

/// Shoppers browse more on weekends (Monday first).
const WEEKDAY_FACTOR: [f64; 7] = [0.92, 0.9, 0.9, 0.95, 1.0, 1.2, 1.25];

/// Relative traffic by local hour: a lunch bump and an evening peak.
const HOUR_WEIGHTS: [f64; 24] = [
    1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.6, 2.8, 3.0, 3.4, 3.2, 2.9, 2.8, 2.9, 3.2, 3.8,
    4.4, 4.6, 4.0, 3.0, 1.8,
];

/// Sessions start in this window of the UTC day so that, with sessions capped
/// at [`crate::session::MAX_SESSION_MS`], they never overlap a neighbouring
/// day's sessions by less than the 30-minute session gap.
const FIRST_START_MIN: i64 = 30;
const LAST_START_MIN: i64 = 23 * 60;
/// Spacing between session starts; minus the session cap leaves > 30 min idle.
const SESSION_SPACING_MIN: i64 = 90;

/// One session to generate: where it sits in time and whose it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionPlan {
    pub start_ms: i64,
    pub user_index: u64,
    pub day: u64,
    /// Position in the generator's live-user list (stable within a day).
    pub pos: u32,
    pub slot: u8,
    pub device: u8,
}

impl SessionPlan {
    pub(crate) fn stream(&self) -> u64 {
        self.day * 8 + u64::from(self.slot)
    }
}

pub(crate) struct User {
    pub index: u64,
    pub id_hash: u64,
    pub birth_day: u64,
    /// Churned after this day; bounds memory for endless runs.
    pub last_day: u64,
    return_amp: f32,
    return_tau: f32,
    return_floor: f32,
    country: u8,
    pub first_name: u8,
    pub last_name: u8,
    pub domain: u8,
    /// Signed up with a misspelt email domain, fixed in a later identify.
    pub email_typo: bool,
    pub plan: Plan,
    /// Index of the user's session in which they sign up; `None` never does.
    pub signup_session: Option<u32>,
    pub sessions_seen: u32,
    pub signed_up_ms: Option<i64>,
    /// Leaks into both experiment variants (second device or a later session).
    pub sees_both: bool,
    pub devices: Vec<Device>,
}

impl User {
    pub(crate) fn new(keys: &Keys, index: u64, birth_day: u64, faults: &FaultRates) -> Self {
        let mut rng = keys.rng(index, PROFILE_STREAM);
        let return_amp: f32 = rng.random_range(0.3..0.7);
        let return_tau: f32 = rng.random_range(3.0..14.0);
        let return_floor: f32 = match rng.random::<f64>() {
            r if r < 0.3 => 0.0,
            r if r < 0.9 => rng.random_range(0.01..0.06),
            _ => rng.random_range(0.12..0.3),
        };
        let lifetime = if return_floor == 0.0 {
            (return_tau * 4.0).ceil() as u64
        } else {
            30 + ((-60.0 * (1.0 - rng.random::<f64>()).ln()) as u64).min(335)
        };
        let country = weighted(&mut rng, COUNTRIES.iter().map(|c| f64::from(c.weight))) as u8;
        let signup_session = (!rng.random_bool(0.12)).then(|| {
            let mut n = 0;
            while n < 6 && rng.random_bool(0.5) {
                n += 1;
            }
            n
        });

        let primary = match rng.random::<f64>() {
            r if r < 0.6 => Platform::Web,
            r if r < 0.85 => Platform::Ios,
            _ => Platform::Android,
        };
        let mut devices = vec![Device::new(&mut rng, primary, birth_day, faults)];
        if rng.random_bool(0.15) {
            let second = match primary {
                Platform::Web if rng.random_bool(0.6) => Platform::Ios,
                Platform::Web => Platform::Android,
                _ => Platform::Web,
            };
            let from_day = birth_day + rng.random_range(0..10);
            devices.push(Device::new(&mut rng, second, from_day, faults));
        }

        Self {
            index,
            id_hash: keys.user_hash(index),
            birth_day,
            last_day: birth_day + lifetime,
            return_amp,
            return_tau,
            return_floor,
            country,
            first_name: rng.random_range(0..FIRST_NAMES.len() as u8),
            last_name: rng.random_range(0..LAST_NAMES.len() as u8),
            domain: rng.random_range(0..DOMAINS.len() as u8),
            email_typo: rng.random_bool(0.04),
            plan: Plan::Free,
            signup_session,
            sessions_seen: 0,
            signed_up_ms: None,
            sees_both: rng.random_bool(0.005),
            devices,
        }
    }

    pub(crate) fn country(&self) -> &'static Country {
        &COUNTRIES[self.country as usize]
    }

    fn is_active(&self, keys: &Keys, day: u64, weekday: usize) -> bool {
        let Some(k) = day.checked_sub(self.birth_day) else {
            return false;
        };
        if k == 0 {
            return true;
        }
        let decay = f64::from(self.return_amp) * (-(k as f64) / f64::from(self.return_tau)).exp();
        let p = (decay + f64::from(self.return_floor)) * WEEKDAY_FACTOR[weekday];
        keys.unit(self.index, day) < p
    }

    /// Appends this user's sessions for `day` (if active) to `plans`.
    pub(crate) fn plan_day(
        &self,
        keys: &Keys,
        day: u64,
        weekday: usize,
        day_start_ms: i64,
        pos: usize,
        plans: &mut Vec<SessionPlan>,
    ) {
        if !self.is_active(keys, day, weekday) {
            return;
        }
        let mut rng = keys.rng(self.index, day * 8 + PLAN_SLOT);
        let count = 1 + weighted(&mut rng, [0.5, 0.3, 0.13, 0.07].into_iter());
        let offset = self.country().offset_min;
        let mut starts = [0i64; 4];
        for start in &mut starts[..count] {
            *start = sample_start_minute(&mut rng, offset);
        }
        starts[..count].sort_unstable();
        let mut previous: Option<i64> = None;
        for (slot, &minute) in starts[..count].iter().enumerate() {
            let minute = previous.map_or(minute, |p| minute.max(p + SESSION_SPACING_MIN));
            if minute >= LAST_START_MIN {
                break;
            }
            previous = Some(minute);
            let second_device = self.devices.get(1).is_some_and(|d| day >= d.from_day);
            let device = u8::from(second_device && rng.random_bool(0.4));
            plans.push(SessionPlan {
                start_ms: day_start_ms + minute * 60_000 + rng.random_range(0..60_000),
                user_index: self.index,
                day,
                pos: pos as u32,
                slot: slot as u8,
                device,
            });
        }
    }
}

/// A start minute within the UTC day, drawn from local-time habits.
fn sample_start_minute(rng: &mut ChaCha8Rng, offset_min: i64) -> i64 {
    for _ in 0..4 {
        let hour = weighted(rng, HOUR_WEIGHTS.into_iter()) as i64;
        let local = hour * 60 + rng.random_range(0..60);
        let utc = (local - offset_min).rem_euclid(1440);
        if (FIRST_START_MIN..LAST_START_MIN).contains(&utc) {
            return utc;
        }
    }
    rng.random_range(FIRST_START_MIN..LAST_START_MIN)
}

impl Device {
    fn new(rng: &mut ChaCha8Rng, platform: Platform, from_day: u64, faults: &FaultRates) -> Self {
        let skew_ms = if rng.random_bool(faults.clock_skew) {
            // Log-uniform between 2 minutes and 6 hours, either direction.
            let minutes = (2f64.ln() + (180f64.ln()) * rng.random::<f64>()).exp();
            let sign = if rng.random_bool(0.5) { 1 } else { -1 };
            sign * (minutes * 60_000.0) as i64
        } else {
            0
        };
        Self {
            platform,
            anon: rng.random(),
            skew_ms,
            ip: u32::from(PUBLIC_OCTETS[rng.random_range(0..PUBLIC_OCTETS.len())]) << 24
                | rng.random_range(0..1 << 24),
            model: rng.random(),
            version: rng.random(),
            from_day,
            logged_in: false,
        }
    }

    pub(crate) fn info(&self) -> DeviceInfo {
        DeviceInfo {
            mobile: self.platform != Platform::Web,
            skew_ms: self.skew_ms,
        }
    }
}

/// Index drawn proportionally to `weights`.
pub(crate) fn weighted(rng: &mut ChaCha8Rng, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().sum();
    let mut x = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if x < w {
            return i;
        }
        x -= w;
        last = i;
    }
    last
}
