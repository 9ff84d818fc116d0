//! One visit to the shop: a burst of views and funnel events on one device.

use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::messages::{
    CATALOG_SIZE, CATEGORIES, Draft, Identity, Kind, Product, SHOP_NAME, SITE, device_context,
    email, fnv1a, money, obj, product_props, s, uuid_from,
};
use crate::population::{
    DeviceInfo, FIRST_NAMES, LAST_NAMES, Plan, Platform, SessionPlan, User, mix64, weighted,
};

/// Hard cap on a session's length; see the session spacing in `population`.
pub(crate) const MAX_SESSION_MS: i64 = 55 * 60_000;

pub(crate) const EXPERIMENT_ID: &str = "checkout_redesign";
/// Checkout Started → Order Completed; the treatment is +15% relative.
const ORDER_RATE: [f64; 2] = [0.60, 0.69];
const ADD_RATE: f64 = 0.35;
const CHECKOUT_RATE: f64 = 0.5;
/// Share of sign-ups made for a company account.
const COMPANY_PERCENT: u64 = 8;

const REFERRERS: [&str; 5] = [
    "",
    "https://www.google.com/",
    "https://www.instagram.com/",
    "https://news.example.org/deals",
    "https://mail.example.net/newsletter",
];
const QUERIES: [&str; 8] = [
    "running shoes",
    "rain jacket",
    "backpack",
    "wool socks",
    "linen shirt",
    "hiking boots",
    "sunglasses",
    "duffel bag",
];

/// Generates the session described by `plan` into `out` and returns what
/// delivery needs to know about the device it ran on.
pub(crate) fn run(
    user: &mut User,
    plan: &SessionPlan,
    rng: &mut ChaCha8Rng,
    out: &mut Vec<Draft>,
) -> DeviceInfo {
    let dev = plan.device as usize;
    let device = &user.devices[dev];
    let info = device.info();
    let user_id = format!("usr_{:016x}", user.id_hash);
    // Leakers see the other arm on their second device, or every other
    // session when they only have one.
    let flip =
        user.sees_both && (dev == 1 || (user.devices.len() == 1 && user.sessions_seen % 2 == 1));
    let variant = (fnv1a(user_id.as_bytes()) & 1) as usize ^ usize::from(flip);
    let anon = uuid_from(device.anon.to_le_bytes());
    let mut session = Session {
        web: device.platform == Platform::Web,
        identity: Arc::new(Identity {
            anonymous_id: anon.clone(),
            user_id,
        }),
        context: Arc::new(device_context(user, device)),
        anon,
        logged_in: device.logged_in,
        url: String::new(),
        now: plan.start_ms,
        deadline: plan.start_ms + MAX_SESSION_MS,
        variant,
        exposed: false,
        cart: Vec::new(),
        rng,
        out,
    };
    session.play(user);
    user.devices[dev].logged_in = session.logged_in;
    user.sessions_seen += 1;
    info
}

struct Session<'a> {
    web: bool,
    identity: Arc<Identity>,
    anon: String,
    logged_in: bool,
    /// analytics.js puts the current page into every message's context.
    context: Arc<Map<String, Value>>,
    url: String,
    now: i64,
    deadline: i64,
    variant: usize,
    exposed: bool,
    cart: Vec<Product>,
    rng: &'a mut ChaCha8Rng,
    out: &'a mut Vec<Draft>,
}

enum Next {
    Continue,
    Leave,
}

impl Session<'_> {
    fn play(&mut self, user: &mut User) {
        let referrer = REFERRERS[self.rng.random_range(0..REFERRERS.len())];
        self.url = referrer.to_owned();
        self.view("Home", "/".into(), SHOP_NAME.into(), Map::new());

        if user.signed_up_ms.is_some() && !self.logged_in {
            // A known customer logging in on a device we have not linked yet.
            self.pause(3, 20);
            self.logged_in = true;
            let traits = self.traits(user);
            self.emit(Kind::Identify, obj([("traits", Value::Object(traits))]));
        } else if self.logged_in {
            self.account_updates(user);
        }

        // Roughly geometric, mean ~6 steps: most visits are short.
        let mut steps = 1;
        while steps < 30 && self.rng.random_bool(0.83) {
            steps += 1;
        }
        let signs_up_now = user.signed_up_ms.is_none()
            && user.signup_session.is_some_and(|n| n <= user.sessions_seen);
        let signup_step = signs_up_now.then(|| self.rng.random_range(0..steps));

        for step in 0..steps {
            if self.now > self.deadline {
                break;
            }
            if signup_step == Some(step) {
                self.sign_up(user);
            }
            self.pause(5, 40);
            let next = match weighted(self.rng, [0.25, 0.2, 0.55].into_iter()) {
                0 => self.browse(),
                1 => self.search(),
                _ => self.product(),
            };
            if matches!(next, Next::Leave) {
                break;
            }
        }
    }

    fn browse(&mut self) -> Next {
        let category = CATEGORIES[self.rng.random_range(0..CATEGORIES.len())];
        let path = format!("/c/{}", category.to_ascii_lowercase());
        let title = format!("{category} – {SHOP_NAME}");
        self.view("Category", path, title, obj([("category", s(category))]));
        Next::Continue
    }

    fn search(&mut self) -> Next {
        let query = QUERIES[self.rng.random_range(0..QUERIES.len())];
        self.track("Products Searched", obj([("query", s(query))]));
        self.pause(1, 3);
        let path = format!("/search?q={}", query.replace(' ', "+"));
        let title = format!("Search: {query} – {SHOP_NAME}");
        self.view("Search Results", path, title, Map::new());
        Next::Continue
    }

    fn product(&mut self) -> Next {
        // Squaring the uniform draw makes a few products popular.
        let u: f64 = self.rng.random();
        let product = Product::get((u * u * f64::from(CATALOG_SIZE)) as u32);
        let id = product.id();
        let title = format!("{} – {SHOP_NAME}", product.name());
        self.view("Product", format!("/products/{id}"), title, Map::new());
        self.pause(1, 2);
        if !self.exposed {
            self.exposed = true;
            let variation = ["control", "treatment"][self.variant];
            self.track(
                "Experiment Viewed",
                obj([
                    ("experiment_id", s(EXPERIMENT_ID)),
                    ("experiment_name", s("Checkout redesign")),
                    ("variation_id", s(variation)),
                    ("variation_name", s(variation)),
                ]),
            );
        }
        self.track("Product Viewed", product_props(&product, id.clone()));
        if !self.rng.random_bool(ADD_RATE) {
            return Next::Continue;
        }
        self.pause(5, 30);
        let mut props = product_props(&product, id);
        props.insert("quantity".into(), Value::from(1));
        props.insert("cart_id".into(), Value::String(self.cart_id()));
        self.track("Product Added", props);
        self.cart.push(product);
        if !self.rng.random_bool(CHECKOUT_RATE) {
            return Next::Continue;
        }
        self.checkout()
    }

    fn checkout(&mut self) -> Next {
        self.pause(5, 20);
        let order_id = format!("o_{:012x}", self.rng.random::<u64>() >> 16);
        self.view(
            "Checkout",
            "/checkout".into(),
            format!("Checkout – {SHOP_NAME}"),
            Map::new(),
        );
        let cents: u64 = self.cart.iter().map(|p| p.cents).sum();
        let products: Vec<Value> = self
            .cart
            .iter()
            .map(|p| {
                Value::Object(obj([
                    ("product_id", Value::String(p.id())),
                    ("price", money(p.cents)),
                    ("quantity", Value::from(1)),
                ]))
            })
            .collect();
        let order = |extra: [(&str, Value); 1]| {
            let mut props = obj([
                ("order_id", Value::String(order_id.clone())),
                ("revenue", money(cents)),
                ("currency", s("USD")),
                ("products", Value::Array(products.clone())),
            ]);
            let [(key, value)] = extra;
            props.insert(key.to_owned(), value);
            props
        };
        self.track("Checkout Started", order([("value", money(cents))]));
        if !self.rng.random_bool(ORDER_RATE[self.variant]) {
            // Abandoned checkout: the cart survives for a later visit.
            return if self.rng.random_bool(0.5) {
                Next::Leave
            } else {
                Next::Continue
            };
        }
        self.pause(20, 60);
        self.track("Order Completed", order([("total", money(cents))]));
        self.cart.clear();
        if self.rng.random_bool(0.6) {
            Next::Leave
        } else {
            Next::Continue
        }
    }

    fn sign_up(&mut self, user: &mut User) {
        self.pause(10, 40);
        self.logged_in = true;
        user.signed_up_ms = Some(self.now);
        let traits = self.traits(user);
        self.emit(Kind::Identify, obj([("traits", Value::Object(traits))]));
        self.pause(1, 2);
        let method = ["email", "google", "apple"][self.rng.random_range(0..3)];
        self.track("Signed Up", obj([("method", s(method))]));
        if self.rng.random_bool(0.25) {
            let body = obj([("previousId", Value::String(self.anon.clone()))]);
            self.emit(Kind::Alias, body);
        }
        if (user.id_hash >> 32) % 100 < COMPANY_PERCENT {
            self.pause(1, 5);
            self.join_company(user);
        }
    }

    /// Identify calls a logged-in customer's app makes now and then.
    fn account_updates(&mut self, user: &mut User) {
        if user.email_typo && self.rng.random_bool(0.3) {
            user.email_typo = false;
            self.pause(5, 30);
            let traits = obj([("email", Value::String(email(user)))]);
            self.emit(Kind::Identify, obj([("traits", Value::Object(traits))]));
        } else if self.rng.random_bool(0.05) {
            self.pause(1, 5);
            let traits = self.traits(user);
            self.emit(Kind::Identify, obj([("traits", Value::Object(traits))]));
        }
        let upgrade = match user.plan {
            Plan::Free if self.rng.random_bool(0.04) => Plan::Pro,
            Plan::Pro if self.rng.random_bool(0.04) => Plan::Business,
            _ => return,
        };
        self.pause(10, 60);
        let from = user.plan;
        user.plan = upgrade;
        let traits = obj([
            ("email", Value::String(email(user))),
            ("plan", s(upgrade.as_str())),
        ]);
        self.emit(Kind::Identify, obj([("traits", Value::Object(traits))]));
        self.track(
            "Plan Upgraded",
            obj([("from", s(from.as_str())), ("to", s(upgrade.as_str()))]),
        );
        if upgrade == Plan::Business {
            self.join_company(user);
        }
    }

    /// Company accounts: a share of people shop for a company (about 500
    /// of them, so colleagues share a `groupId`), as does every business plan.
    fn join_company(&mut self, user: &User) {
        let org = user.id_hash % 500;
        let name = LAST_NAMES[org as usize % LAST_NAMES.len()];
        let suffix = ["& Co", "GmbH", "Ltd", "Labs"][(org / 16 % 4) as usize];
        let traits = obj([
            ("name", Value::String(format!("{name} {suffix}"))),
            ("plan", s(user.plan.as_str())),
            ("employees", Value::from(5 + mix64(org) % 500)),
        ]);
        let body = obj([
            ("groupId", Value::String(format!("org_{org:03}"))),
            ("traits", Value::Object(traits)),
        ]);
        self.emit(Kind::Group, body);
    }

    fn traits(&self, user: &User) -> Map<String, Value> {
        let first = FIRST_NAMES[user.first_name as usize];
        let last = LAST_NAMES[user.last_name as usize];
        let created = user.signed_up_ms.unwrap_or(self.now);
        obj([
            ("email", Value::String(email(user))),
            ("name", Value::String(format!("{first} {last}"))),
            ("plan", s(user.plan.as_str())),
            ("country", s(user.country().code)),
            (
                "createdAt",
                Value::String(crate::messages::format_ts(created)),
            ),
        ])
    }

    fn cart_id(&self) -> String {
        format!("cart_{:016x}", fnv1a(self.anon.as_bytes()))
    }

    /// Advances the clock by a human pause of `min_s` plus an exponential
    /// tail with mean `mean_s`, capped at four minutes.
    fn pause(&mut self, min_s: u32, mean_s: u32) {
        let tail = -f64::from(mean_s) * (1.0 - self.rng.random::<f64>()).ln();
        let ms = (f64::from(min_s) + tail).min(240.0) * 1000.0;
        self.now += ms as i64;
    }

    fn view(&mut self, name: &str, path: String, title: String, mut props: Map<String, Value>) {
        if !self.web {
            self.emit(
                Kind::Screen,
                obj([("name", s(name)), ("properties", Value::Object(props))]),
            );
            return;
        }
        let url = format!("{SITE}{path}");
        let referrer = std::mem::replace(&mut self.url, url.clone());
        let page = obj([
            ("path", Value::String(path)),
            ("url", Value::String(url)),
            ("title", Value::String(title)),
            ("referrer", Value::String(referrer)),
        ]);
        for (key, value) in &page {
            props.insert(key.clone(), value.clone());
        }
        let mut context = Map::clone(&self.context);
        context.insert("page".into(), Value::Object(page));
        self.context = Arc::new(context);
        self.emit(
            Kind::Page,
            obj([("name", s(name)), ("properties", Value::Object(props))]),
        );
    }

    fn track(&mut self, event: &str, properties: Map<String, Value>) {
        self.emit(
            Kind::Track,
            obj([
                ("event", s(event)),
                ("properties", Value::Object(properties)),
            ]),
        );
    }

    fn emit(&mut self, kind: Kind, body: Map<String, Value>) {
        // Cutting the session here keeps the gap to the next one over 30 min.
        if self.now > self.deadline {
            return;
        }
        self.out.push(Draft {
            time_ms: self.now,
            kind,
            identity: Arc::clone(&self.identity),
            logged_in: self.logged_in,
            context: Arc::clone(&self.context),
            body,
        });
    }
}
