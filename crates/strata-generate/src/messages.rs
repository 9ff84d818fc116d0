//! JSON building blocks: timestamps, ids, device contexts and the catalog.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::population::{DOMAINS, Device, FIRST_NAMES, LAST_NAMES, Platform, User, mix64};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Track,
    Identify,
    Page,
    Screen,
    Alias,
    Group,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Identify => "identify",
            Kind::Page => "page",
            Kind::Screen => "screen",
            Kind::Alias => "alias",
            Kind::Group => "group",
        }
    }
}

/// What every message of one session shares; kept once per session so that
/// buffered messages stay small until they are rendered.
pub(crate) struct Identity {
    pub anonymous_id: String,
    pub user_id: String,
}

/// A message before delivery decides its id, clocks and faults.
#[derive(Clone)]
pub(crate) struct Draft {
    /// True time of the event, before any device clock skew.
    pub time_ms: i64,
    pub kind: Kind,
    pub identity: Arc<Identity>,
    pub logged_in: bool,
    /// Shared by the messages sent from one page (web) or session (mobile).
    pub context: Arc<Map<String, Value>>,
    /// The type-specific fields (`event`, `properties`, `traits`, ...).
    pub body: Map<String, Value>,
}

/// How a malformed message is broken.
#[derive(Clone, Copy)]
pub(crate) enum Breakage {
    NoIds,
    BogusType(&'static str),
    NoEvent,
    NumericEvent(u32),
}

/// A delivered message waiting for its send time. Rendering to JSON happens
/// only when it is yielded: building the tree just before the consumer reads
/// and drops it keeps allocations cache-hot and the buffer small.
pub(crate) struct Pending {
    pub draft: Draft,
    pub message_id: [u8; 16],
    pub skew_ms: i64,
    /// True send time (the device stamps `sentAt` with `sent_ms + skew_ms`).
    pub sent_ms: i64,
    pub breakage: Option<Breakage>,
}

impl Pending {
    pub(crate) fn render(self) -> Value {
        let Draft {
            time_ms,
            kind,
            identity,
            logged_in,
            context,
            mut body,
        } = self.draft;
        body.insert("type".into(), s(kind.as_str()));
        // Segment's alias names the anonymous id as `previousId` instead.
        if kind != Kind::Alias {
            body.insert(
                "anonymousId".into(),
                Value::String(identity.anonymous_id.clone()),
            );
        }
        if logged_in {
            body.insert("userId".into(), Value::String(identity.user_id.clone()));
        }
        body.insert(
            "context".into(),
            Value::Object(Arc::unwrap_or_clone(context)),
        );
        body.insert(
            "messageId".into(),
            Value::String(uuid_from(self.message_id)),
        );
        body.insert(
            "timestamp".into(),
            Value::String(format_ts(time_ms + self.skew_ms)),
        );
        body.insert(
            "sentAt".into(),
            Value::String(format_ts(self.sent_ms + self.skew_ms)),
        );
        match self.breakage {
            None => {}
            Some(Breakage::NoIds) => {
                body.remove("userId");
                body.remove("anonymousId");
            }
            Some(Breakage::BogusType(bogus)) => {
                body.insert("type".into(), s(bogus));
            }
            Some(Breakage::NoEvent) => {
                body.remove("event");
            }
            Some(Breakage::NumericEvent(n)) => {
                body.insert("event".into(), Value::from(n));
            }
        }
        Value::Object(body)
    }
}

pub(crate) fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in pairs {
        map.insert(key.to_owned(), value);
    }
    map
}

pub(crate) fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// Money as a JSON number with two decimals.
pub(crate) fn money(cents: u64) -> Value {
    Value::from(cents as f64 / 100.0)
}

/// RFC 3339 with milliseconds and `Z`. Hand-rolled because chrono's
/// formatter dominated the profile at millions of messages.
pub(crate) fn format_ts(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000) as u32;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    if !(0..=9999).contains(&y) {
        let t = chrono::DateTime::from_timestamp_millis(ms).expect("time in range");
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u32);
    put(5, 2, mo);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 3, milli);
    String::from_utf8(buf.to_vec()).expect("ascii")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) fn uuid_from(bytes: [u8; 16]) -> String {
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

pub(crate) const SITE: &str = "https://shop.example.com";
pub(crate) const SHOP_NAME: &str = "Strata Shop";

const WEB_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
];
const IOS_MODELS: [&str; 4] = ["iPhone14,5", "iPhone15,2", "iPhone16,1", "iPhone17,3"];
const IOS_VERSIONS: [&str; 3] = ["17.6.1", "18.1", "18.2"];
const ANDROID_MODELS: [(&str, &str); 4] = [
    ("samsung", "SM-S918B"),
    ("samsung", "SM-A546B"),
    ("Google", "Pixel 8"),
    ("Xiaomi", "23049PCD8G"),
];
const ANDROID_VERSIONS: [&str; 3] = ["13", "14", "15"];
const APP_VERSIONS: [(&str, &str); 3] = [("3.4.0", "340"), ("3.5.1", "351"), ("3.6.0", "360")];

/// The per-device part of `context`; web messages add the current `page`.
pub(crate) fn device_context(user: &User, device: &Device) -> Map<String, Value> {
    let country = user.country();
    let ip = device.ip.to_be_bytes();
    let mut ctx = obj([
        (
            "ip",
            Value::String(format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])),
        ),
        ("locale", s(country.locale)),
        ("timezone", s(country.timezone)),
    ]);
    let pick = |n: usize| device.model as usize % n;
    // A stable hardware id distinct from the (reinstall-scoped) anonymous id.
    let device_id = || {
        Value::String(format!(
            "{:016x}",
            mix64(device.anon as u64 ^ (device.anon >> 64) as u64)
        ))
    };
    let app = || {
        let (version, build) = APP_VERSIONS[device.version as usize % APP_VERSIONS.len()];
        Value::Object(obj([
            ("name", s(SHOP_NAME)),
            ("version", s(version)),
            ("build", s(build)),
            ("namespace", s("com.example.strata.shop")),
        ]))
    };
    match device.platform {
        Platform::Web => {
            ctx.insert("userAgent".into(), s(WEB_AGENTS[pick(WEB_AGENTS.len())]));
            ctx.insert("library".into(), library("analytics.js", "npm:next-1.72.0"));
        }
        Platform::Ios => {
            ctx.insert(
                "os".into(),
                Value::Object(obj([
                    ("name", s("iOS")),
                    (
                        "version",
                        s(IOS_VERSIONS[device.version as usize % IOS_VERSIONS.len()]),
                    ),
                ])),
            );
            ctx.insert(
                "device".into(),
                Value::Object(obj([
                    ("id", device_id()),
                    ("manufacturer", s("Apple")),
                    ("model", s(IOS_MODELS[pick(IOS_MODELS.len())])),
                    ("type", s("ios")),
                ])),
            );
            ctx.insert("app".into(), app());
            ctx.insert("library".into(), library("analytics-ios", "4.1.8"));
        }
        Platform::Android => {
            let (maker, model) = ANDROID_MODELS[pick(ANDROID_MODELS.len())];
            ctx.insert(
                "os".into(),
                Value::Object(obj([
                    ("name", s("Android")),
                    (
                        "version",
                        s(ANDROID_VERSIONS[device.version as usize % ANDROID_VERSIONS.len()]),
                    ),
                ])),
            );
            ctx.insert(
                "device".into(),
                Value::Object(obj([
                    ("id", device_id()),
                    ("manufacturer", s(maker)),
                    ("model", s(model)),
                    ("type", s("android")),
                ])),
            );
            ctx.insert("app".into(), app());
            ctx.insert("library".into(), library("analytics-android", "4.11.3"));
        }
    }
    ctx
}

fn library(name: &str, version: &str) -> Value {
    Value::Object(obj([("name", s(name)), ("version", s(version))]))
}

pub(crate) const CATEGORIES: [&str; 8] = [
    "Shoes",
    "Jackets",
    "Bags",
    "Accessories",
    "Shirts",
    "Pants",
    "Outdoor",
    "Home",
];
const ADJECTIVES: [&str; 8] = [
    "Classic", "Urban", "Trail", "Everyday", "Summit", "Coastal", "Vintage", "Nordic",
];
pub(crate) const CATALOG_SIZE: u32 = 600;

/// Catalog entries are pure functions of the index, so nothing is stored.
#[derive(Clone, Copy)]
pub(crate) struct Product {
    pub index: u32,
    pub category: &'static str,
    pub adjective: &'static str,
    pub cents: u64,
}

impl Product {
    pub(crate) fn get(index: u32) -> Self {
        let h = mix64(u64::from(index) ^ 0xC0FF_EE00);
        Self {
            index,
            category: CATEGORIES[(h % 8) as usize],
            adjective: ADJECTIVES[(h >> 8) as usize % ADJECTIVES.len()],
            cents: 500 + (h >> 16) % 195 * 100 + 99,
        }
    }

    pub(crate) fn id(&self) -> String {
        format!("p_{:04}", self.index)
    }

    pub(crate) fn name(&self) -> String {
        format!("{} {}", self.adjective, self.category)
    }
}

pub(crate) fn product_props(product: &Product, id: String) -> Map<String, Value> {
    obj([
        ("product_id", Value::String(id)),
        ("name", Value::String(product.name())),
        ("category", s(product.category)),
        ("price", money(product.cents)),
        ("currency", s("USD")),
    ])
}

pub(crate) fn email(user: &User) -> String {
    let first = FIRST_NAMES[user.first_name as usize].to_ascii_lowercase();
    let last = LAST_NAMES[user.last_name as usize].to_ascii_lowercase();
    let (good, typo) = DOMAINS[user.domain as usize];
    let domain = if user.email_typo { typo } else { good };
    format!("{first}.{last}{}@{domain}", user.id_hash % 100)
}

/// Stable across runs and platforms, unlike `std`'s hasher.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
