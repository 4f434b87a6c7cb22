//! Log templates of the simulated services and a fast renderer for them.
//!
//! Each service writes from a fixed set of templates for its role (5–15, mostly INFO, some DEBUG and
//! WARN, a rare background ERROR) with variable parts: ids, amounts, durations, user ids. Template
//! mining in the pipeline should recover these sets; fault situations add their own lines, written
//! by the traffic generator.

use super::rng::SimRng;
use super::topology::Role;
use crate::model::Level;
use rand::Rng;
use std::fmt::Write;

pub(crate) struct Tpl {
    pub level: Level,
    pub weight: f64,
    pub text: &'static str,
}

const fn t(level: Level, weight: f64, text: &'static str) -> Tpl {
    Tpl { level, weight, text }
}

use Level::{Debug as D, Error as E, Info as I, Warn as W};

const COMMON_APP: &[Tpl] = &[
    t(I, 3.0, "request completed method={op} status=200 duration={ms}ms"),
    t(D, 2.0, "handling {op} request_id={req}"),
    t(D, 1.0, "auth context resolved for user {user}"),
    t(W, 0.06, "request {req} retried by client {ip}"),
    t(E, 0.008, "unexpected EOF reading request body from {ip}"),
    t(E, 0.004, "failed to flush metrics batch: broken pipe"),
];

const FRONTEND: &[Tpl] = &[
    t(I, 2.0, "GET {path} 200 {ms}ms user={user}"),
    t(I, 1.0, "rendered page {page} in {ms}ms"),
    t(D, 1.0, "session {sess} refreshed for user {user}"),
    t(I, 0.8, "served static asset /static/{asset} ({bytes} bytes)"),
    t(W, 0.05, "client {ip} disconnected before response was sent"),
];

const CHECKOUT: &[Tpl] = &[
    t(I, 1.5, "order {order} placed by user {user}, total={amount} USD"),
    t(I, 1.0, "checkout started for user {user} with {n} items"),
    t(D, 1.0, "reserving stock for order {order}"),
    t(I, 1.0, "published order.created for {order}"),
    t(W, 0.05, "payment retry scheduled for order {order}"),
    t(E, 0.008, "order {order} rejected: address validation failed"),
];

const CATALOG: &[Tpl] = &[
    t(I, 1.5, "product {sku} fetched (cache {hit})"),
    t(D, 1.0, "loaded {n} products for category {cat}"),
    t(I, 1.0, "listing page {n} of category {cat}"),
    t(D, 0.8, "price resolved for {sku}"),
];

const CART: &[Tpl] = &[
    t(I, 1.5, "cart of user {user} has {n} items"),
    t(I, 1.0, "item {sku} added to cart of user {user}"),
    t(D, 1.0, "cart {cart} persisted in {ms}ms"),
];

const AUTH: &[Tpl] = &[
    t(I, 1.5, "user {user} authenticated via ldap"),
    t(I, 1.0, "session token issued for user {user} (ttl 3600s)"),
    t(D, 1.5, "token validated for user {user}"),
    t(W, 0.08, "invalid password for user {user}"),
];

const SEARCH: &[Tpl] = &[
    t(I, 1.5, "query \"{term}\" returned {n} results in {ms}ms"),
    t(D, 1.0, "search index shard {n} responded"),
    t(D, 0.5, "spelling suggestion for \"{term}\" computed"),
];

const PAYMENT: &[Tpl] = &[
    t(I, 1.5, "charge {charge} authorized for order {order}: {amount} USD"),
    t(D, 1.0, "card token tok_{req} validated"),
    t(W, 0.08, "card declined for order {order}: insufficient_funds"),
];

const SHIPPING: &[Tpl] = &[
    t(I, 1.5, "shipping quote for order {order}: {amount} USD ({n} days)"),
    t(D, 1.0, "carrier {carrier} selected for order {order}"),
];

const RECOMMENDATION: &[Tpl] =
    &[t(I, 1.5, "returning {n} recommendations for user {user}"), t(D, 1.0, "model scores computed in {ms}ms")];

const INVENTORY: &[Tpl] = &[
    t(I, 1.5, "stock for {sku}: {n} units"),
    t(I, 0.7, "reserved {n} units of {sku} for order {order}"),
    t(D, 1.0, "inventory row locked for {sku}"),
];

const USER: &[Tpl] =
    &[t(I, 1.5, "profile loaded for user {user}"), t(D, 1.0, "preferences cache refreshed for user {user}")];

const NOTIFICATION: &[Tpl] = &[
    t(I, 1.5, "consumed order.created for order {order}"),
    t(I, 1.0, "sent confirmation email to user {user}"),
    t(D, 1.0, "message acknowledged offset={n}"),
];

const CURRENCY: &[Tpl] = &[t(I, 1.5, "converted {amount} USD to {cur}"), t(D, 1.0, "exchange rates age {n}s")];

const PRICING: &[Tpl] = &[t(I, 1.5, "price for {sku}: {amount} USD"), t(D, 1.0, "applied promotion PROMO{n} to {sku}")];

const REVIEW: &[Tpl] = &[t(I, 1.5, "loaded {n} reviews for {sku}"), t(D, 0.5, "review summary cached for {sku}")];

const AD: &[Tpl] = &[t(I, 1.5, "served ad {ad} for category {cat}"), t(D, 0.5, "ad auction finished with {n} bids")];

const EXTRA: &[Tpl] = &[
    t(I, 1.5, "processed item {req} in {ms}ms"),
    t(D, 1.0, "job {req} enqueued"),
    t(I, 0.5, "batch of {n} records handled"),
];

const DIRECTORY: &[Tpl] = &[
    t(I, 2.0, "conn={n} op={n} BIND dn=\"uid={user},ou=people,dc=shop,dc=example\" result=0 etime={ms}ms"),
    t(I, 1.5, "conn={n} op={n} SRCH base=\"ou=people,dc=shop,dc=example\" filter=\"(uid={user})\" nentries=1"),
    t(D, 1.0, "conn={n} op={n} UNBIND"),
    t(W, 0.02, "conn={n} closed: idle timeout"),
];

const DATABASE: &[Tpl] = &[
    t(D, 2.0, "duration: {ms} ms statement: {query}"),
    t(I, 0.3, "connection authorized: user=app database=orders"),
    t(I, 0.2, "automatic vacuum of table \"orders.public.{table}\": index scans: 1"),
    t(W, 0.01, "checkpoints are occurring too frequently ({n} seconds apart)"),
    t(E, 0.002, "could not receive data from client: Connection reset by peer"),
];

const CACHE: &[Tpl] =
    &[t(D, 2.0, "GET session:{user} {hit}"), t(D, 1.0, "SET cart:{user} EX 3600"), t(I, 0.1, "DB saved on disk")];

const QUEUE: &[Tpl] = &[
    t(D, 2.0, "message published to order-events partition {n} offset {offset}"),
    t(I, 0.5, "consumer group notification committed offset {offset}"),
    t(W, 0.01, "partition order-events-{n} under-replicated"),
];

/// The templates a service of `role` writes for an ordinary request.
pub(crate) fn templates(role: Role) -> Vec<&'static Tpl> {
    let own: &[Tpl] = match role {
        Role::Frontend => FRONTEND,
        Role::Checkout => CHECKOUT,
        Role::Catalog => CATALOG,
        Role::Cart => CART,
        Role::Auth => AUTH,
        Role::Search => SEARCH,
        Role::Payment => PAYMENT,
        Role::Shipping => SHIPPING,
        Role::Recommendation => RECOMMENDATION,
        Role::Inventory => INVENTORY,
        Role::User => USER,
        Role::Notification => NOTIFICATION,
        Role::Currency => CURRENCY,
        Role::Pricing => PRICING,
        Role::Review => REVIEW,
        Role::Ad => AD,
        Role::Extra => EXTRA,
        Role::Directory => DIRECTORY,
        Role::Database => DATABASE,
        Role::Cache => CACHE,
        Role::Queue => QUEUE,
    };
    let mut all: Vec<&'static Tpl> = own.iter().collect();
    if role.is_app() {
        all.extend(COMMON_APP.iter());
    }
    all
}

/// Mean log lines per request span, by role.
pub(crate) fn lines_per_span(role: Role) -> f64 {
    match role {
        Role::Frontend => 7.0,
        Role::Database => 1.5,
        Role::Cache => 0.5,
        Role::Queue => 1.0,
        Role::Directory => 2.0,
        _ => 6.0,
    }
}

/// The values a template can refer to that belong to the request.
pub(crate) struct Vars<'a> {
    pub op: &'a str,
    pub ms: f64,
    pub user: u32,
    pub order: u64,
}

const PAGES: &[&str] = &["home", "product", "cart", "checkout", "search", "account"];
const CATEGORIES: &[&str] = &["shoes", "books", "kitchen", "garden", "toys", "audio", "outdoor"];
const TERMS: &[&str] = &["running shoes", "usb-c cable", "coffee grinder", "tent", "lego", "headphones"];
const CARRIERS: &[&str] = &["ups", "dhl", "fedex", "usps"];
const CURRENCIES: &[&str] = &["EUR", "GBP", "JPY", "CAD", "CHF"];
const TABLES: &[&str] = &["orders", "order_items", "stock", "users", "products"];
const QUERIES: &[&str] = &[
    "SELECT * FROM orders WHERE id = $1",
    "SELECT id, sku, qty FROM order_items WHERE order_id = $1",
    "UPDATE stock SET qty = qty - $1 WHERE sku = $2",
    "INSERT INTO orders (user_id, total) VALUES ($1, $2)",
    "SELECT * FROM users WHERE id = $1",
    "SELECT * FROM products WHERE category = $1 LIMIT 50",
];
const ASSETS: &[&str] = &["app.js", "main.css", "logo.svg", "vendor.js"];

fn pick<'a>(rng: &mut SimRng, items: &[&'a str]) -> &'a str {
    items.get(rng.gen_range(0..items.len().max(1))).copied().unwrap_or("")
}

/// Appends `text` with its placeholders filled to `out`.
pub(crate) fn render(out: &mut String, text: &str, v: &Vars, rng: &mut SimRng) {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return;
        };
        let name = &after[..close];
        // Writing to a String cannot fail.
        let _ = match name {
            "op" => {
                out.push_str(v.op);
                Ok(())
            }
            "ms" => write!(out, "{:.1}", v.ms),
            "user" => write!(out, "u-{:05}", v.user),
            "order" => write!(out, "ord-{:08x}", v.order),
            "sku" => write!(out, "SKU-{:05}", rng.gen_range(10_000..99_999)),
            "n" => write!(out, "{}", rng.gen_range(1..40)),
            "offset" => write!(out, "{}", rng.gen_range(100_000..9_000_000)),
            "amount" => write!(out, "{}.{:02}", rng.gen_range(3..400), rng.gen_range(0..100)),
            "ip" => write!(out, "10.{}.{}.{}", rng.gen_range(0..8), rng.gen_range(0..255), rng.gen_range(1..255)),
            "req" => write!(out, "{:012x}", rng.gen::<u64>() & 0xFFFF_FFFF_FFFF),
            "sess" => write!(out, "s-{:010x}", rng.gen::<u64>() & 0xFF_FFFF_FFFF),
            "charge" => write!(out, "ch_{:010x}", rng.gen::<u64>() & 0xFF_FFFF_FFFF),
            "cart" => write!(out, "cart-{:06}", rng.gen_range(0..1_000_000)),
            "ad" => write!(out, "ad-{:04}", rng.gen_range(0..5000)),
            "bytes" => write!(out, "{}", rng.gen_range(800..250_000)),
            "hit" => {
                out.push_str(if rng.gen::<f64>() < 0.9 { "hit" } else { "miss" });
                Ok(())
            }
            "page" => {
                out.push_str(pick(rng, PAGES));
                Ok(())
            }
            "path" => {
                out.push_str(v.op.strip_prefix("GET ").unwrap_or(v.op));
                Ok(())
            }
            "cat" => {
                out.push_str(pick(rng, CATEGORIES));
                Ok(())
            }
            "term" => {
                out.push_str(pick(rng, TERMS));
                Ok(())
            }
            "carrier" => {
                out.push_str(pick(rng, CARRIERS));
                Ok(())
            }
            "cur" => {
                out.push_str(pick(rng, CURRENCIES));
                Ok(())
            }
            "table" => {
                out.push_str(pick(rng, TABLES));
                Ok(())
            }
            "query" => {
                out.push_str(pick(rng, QUERIES));
                Ok(())
            }
            "asset" => {
                out.push_str(pick(rng, ASSETS));
                Ok(())
            }
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
                Ok(())
            }
        };
        rest = &after[close + 1..];
    }
    out.push_str(rest);
}

/// A plausible exception for a freshly deployed bug in `service`.
pub(crate) fn deploy_exception(service: &str, op: &str, rng: &mut SimRng) -> String {
    let class = camel(service);
    match rng.gen_range(0..3) {
        0 => format!(
            "java.lang.NullPointerException: Cannot invoke \"{class}Request.getCurrency()\" because \"request.pricing\" is null at com.shop.{}.{class}Handler.handle({class}Handler.java:{})",
            service.replace('-', ""),
            rng.gen_range(80..400)
        ),
        1 => format!(
            "unhandled exception in {op}: IllegalStateException: missing field 'currency' in {class}Payload (schema v{})",
            rng.gen_range(2..9)
        ),
        _ => format!(
            "java.lang.ClassCastException: class com.shop.model.Money cannot be cast to class java.math.BigDecimal at com.shop.{}.{class}Service.total({class}Service.java:{})",
            service.replace('-', ""),
            rng.gen_range(40..200)
        ),
    }
}

fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = true;
    for ch in s.chars() {
        if ch == '-' || ch == '_' {
            up = true;
        } else if up {
            out.extend(ch.to_uppercase());
            up = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::rng;

    #[test]
    fn render_fills_every_placeholder() {
        let mut r = rng::stream(3, &[1]);
        let v = Vars { op: "GET /api/cart", ms: 12.345, user: 42, order: 0xabc };
        for role in
            [Role::Frontend, Role::Checkout, Role::Database, Role::Directory, Role::Queue, Role::Cache, Role::Extra]
        {
            for tpl in templates(role) {
                let mut s = String::new();
                render(&mut s, tpl.text, &v, &mut r);
                assert!(!s.contains('{'), "unfilled: {s}");
            }
        }
        let mut s = String::new();
        render(&mut s, "took {ms}ms for {user} on {op}", &v, &mut r);
        assert_eq!(s, "took 12.3ms for u-00042 on GET /api/cart");
    }
}
