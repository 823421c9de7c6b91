// ---- ire.js: impact's `ire(...)` calls, mapped onto `utt(...)`. ----
// For sites leaving impact.com's Universal Tracking Tag: load this file after the utt snippet
// (`<script src="/ire.js"></script>`) and the `ire('identify', ...)` and
// `ire('trackConversion', ...)` calls in the site's templates keep working, now feeding utt.
// Not part of utt.js or its wasm: only sites that load it download it. The mapping table is in
// docs/migrating-from-ire.md. What has no utt equivalent is said in a console warning
// ("[utt ire] ..."), never thrown: every entry point catches everything.
(function (w) {
  'use strict';
  var name = typeof w.ire_o == 'string' && w.ire_o ? w.ire_o : 'ire';
  var old = w[name];
  // Loaded twice: the first copy already owns `ire`.
  if (old && old.utt) return;

  var warn = function (text) {
    try {
      console.warn('[utt ire] ' + text);
    } catch (e) {}
  };
  var fail = function (error) {
    warn(error);
    return Promise.resolve({ ok: false, status: 'error', error: 'ire: ' + error });
  };
  // The snippet's stub, if this file runs before it: calls queue until utt.js replays them.
  w.utt =
    w.utt ||
    function () {
      (w.utt.q = w.utt.q || []).push(arguments);
    };
  // `window.utt` is read at each call: the module replaces the snippet's stub once it loads.
  var utt = function () {
    return w.utt.apply(w, arguments);
  };
  var own = function (o, k) {
    return Object.prototype.hasOwnProperty.call(o, k);
  };
  // impact matches its field names without regard to case (`currencycode` is `currencyCode`)
  // and leaves out empty values; so does this: lower-cased name -> [name as written, value].
  var fields = function (o) {
    var out = {};
    if (o && typeof o == 'object')
      for (var k in o) if (own(o, k) && o[k] != null && o[k] !== '') out[k.toLowerCase()] = [k, o[k]];
    return out;
  };
  var take = function (f, key) {
    var v = f[key];
    delete f[key];
    return v && v[1];
  };
  var rest = function (f) {
    return Object.keys(f).map(function (k) {
      return f[k][0];
    });
  };

  // ---- Exact decimals (impact's amounts are strings or numbers; utt does no float arithmetic
  // on money, so neither does this): a decimal is [digits as a BigInt, digits after the point].
  // Only what utt accepts as an amount (at most 15 digits, and 8 after the point) is one: any
  // other value passed on would have utt refuse the whole order.
  var dec = function (v) {
    if (typeof v == 'number') v = String(v);
    var m = typeof v == 'string' && /^(\d{1,15})(?:\.(\d{1,8}))?$/.exec(v);
    return m ? [BigInt(m[1] + (m[2] || '')), (m[2] || '').length] : null;
  };
  var scaled = function (d, s) {
    return d[0] * 10n ** BigInt(s - d[1]);
  };
  var text = function (n, s) {
    var t = n.toString().padStart(s + 1, '0');
    return s ? t.slice(0, -s) + '.' + t.slice(-s) : t;
  };
  // The sum of decimals minus one (`sub`, optional): a decimal string, or null if any is not a
  // decimal or the result is negative or too long.
  var total = function (add, sub) {
    var all = add.concat(sub == null ? [] : [sub]).map(dec);
    if (all.some((d) => !d)) return null;
    var s = Math.max.apply(Math, all.map((d) => d[1]));
    var n = all.reduce((a, d, i) => (i < add.length ? a + scaled(d, s) : a - scaled(d, s)), 0n);
    var t = text(n, s);
    return n < 0n || !dec(t) ? null : t;
  };
  // A line's subtotal divided by its quantity, if the unit price is an exact decimal of at most
  // 8 digits after the point; null otherwise.
  var unit = function (sub, q) {
    var d = dec(sub);
    for (var k = 0; d && d[1] + k <= 8; k++) {
      var n = d[0] * 10n ** BigInt(k);
      if (n % BigInt(q) == 0n) return text(n / BigInt(q), d[1] + k);
    }
    return null;
  };

  // A customerEmail that is an address goes to utt's `email` (normalised and SHA-256-hashed in
  // the browser by utt). impact also takes a SHA-1 of the address; utt cannot turn a hash into
  // its own SHA-256 of the address, so a hash is left out, with a warning.
  var customer = function (call, f) {
    var c = {};
    var id = take(f, 'customerid');
    var email = take(f, 'customeremail');
    if (id != null) c.customerId = String(id);
    if (email != null) {
      if (typeof email == 'string' && email.indexOf('@') > 0) c.email = email;
      else
        warn(
          call +
            ': customerEmail is not an email address (' +
            (/^[0-9a-f]{40}$/i.test(email) ? 'a SHA-1 hash, as impact accepts' : 'a hash or another value') +
            '): utt hashes the plain address itself (SHA-256) and cannot use a hash, so it was left out; pass the address instead'
        );
    }
    return c;
  };

  // The identity last passed to utt('identify'): trackConversion passes on its customer fields
  // too, unless they are the ones the page already identified with.
  var identity;
  var identifyOnce = function (c) {
    var key = JSON.stringify(c);
    if (key == identity) return;
    identity = key;
    return utt('identify', c);
  };

  function identify(p) {
    var call = "ire('identify')";
    var f = fields(p);
    var c = customer(call, f);
    if (take(f, 'customprofileid') != null)
      warn(call + ": customProfileId was left out: utt's own first-party visitor ID plays its part");
    var left = rest(f);
    if (left.length) warn(call + ': ' + left.join(', ') + ' left out: utt has no such field');
    if (c.customerId == null && c.email == null) {
      if (p && typeof p == 'object') return Promise.resolve({ ok: false, status: 'error', error: 'ire: identify has no customerId or email address for utt' });
      return fail(call + ' needs an object');
    }
    identity = JSON.stringify(c);
    return utt('identify', c);
  }

  var STATUS = { new: 'new', returning: 'returning', existing: 'returning', repeat: 'returning' };

  function trackConversion(tracker, p, options) {
    var call = "ire('trackConversion')";
    if (!p || typeof p != 'object') return fail(call + ' needs an object of order fields as its second argument');
    var f = fields(p);
    var order = {};
    var notes = [];
    var orderId = take(f, 'orderid');
    if (orderId != null) order.orderId = orderId;

    // Identity fields go to utt('identify', ...) first, as impact links the order to them.
    var c = customer(call, f);
    if (c.customerId != null || c.email != null) identifyOnce(c);

    var v = take(f, 'currencycode');
    if (v != null) order.currency = typeof v == 'string' ? v.trim().toUpperCase() : v;
    v = take(f, 'orderpromocode');
    if (v != null) order.promoCode = String(v);
    var custom = {};
    // A money field utt would refuse (not a non-negative decimal) would cost the whole order:
    // it is kept in order.custom instead, as given.
    var money = function (v, field, into) {
      if (v == null || dec(v)) return v;
      custom[field] = v;
      notes.push(field + ' ' + JSON.stringify(v) + ' is not a decimal amount: kept as order.custom.' + field + (into ? ', not as ' + into : ''));
      return null;
    };
    var discount = money(take(f, 'orderdiscount'), 'orderDiscount', 'order.discount');
    if (discount != null) order.discount = discount;
    v = take(f, 'customerstatus');
    if (v != null) {
      var s = STATUS[String(v).trim().toLowerCase()];
      if (s) order.customerStatus = s;
      else {
        custom.customerStatus = v;
        notes.push('customerStatus "' + v + '" is not new or returning: kept as order.custom.customerStatus');
      }
    }

    // Lines: impact's subTotal is the line's amount (price times quantity); utt's price is the
    // unit price.
    var items = take(f, 'items');
    var lines = [];
    var amounts = [];
    if (items != null) {
      items = Array.isArray(items) ? items : [items];
      order.items = items.map(function (it, i) {
        var g = fields(it);
        var line = {};
        var at = 'items[' + i + ']';
        var x = take(g, 'sku');
        if (x != null) line.sku = String(x);
        x = take(g, 'name');
        if (x != null) line.name = String(x);
        x = take(g, 'category');
        if (x != null) line.category = String(x);
        var q = take(g, 'quantity');
        var qty = q == null ? 1 : Number(q);
        if (!(qty >= 0 && qty % 1 == 0)) {
          notes.push(at + '.quantity "' + q + '" is not a whole number: left out');
          qty = null;
        } else if (q != null) line.quantity = qty;
        var price = take(g, 'price');
        var sub = take(g, 'subtotal');
        if (price != null && !dec(price)) {
          notes.push(at + '.price ' + JSON.stringify(price) + ' is not a decimal amount: left out');
          price = null;
        }
        if (sub != null && !dec(sub)) {
          notes.push(at + '.subTotal ' + JSON.stringify(sub) + ' is not a decimal amount: left out');
          sub = null;
        }
        if (price != null) line.price = price;
        else if (sub != null && qty) {
          var u = unit(sub, qty);
          if (u != null) line.price = u;
          else notes.push(at + '.subTotal ' + sub + ' is not an exact unit price for quantity ' + qty + ': the line has no price (the order amount still counts it)');
        }
        if (sub != null) amounts.push(sub);
        else if (price != null && qty != null) {
          // price × quantity, exactly.
          var d = dec(price);
          amounts.push(text(d[0] * BigInt(qty), d[1]));
        } else amounts.push(null);
        var extra = rest(g);
        if (extra.length) notes.push(at + ': ' + extra.join(', ') + ' left out: utt items have sku, name, category, price and quantity');
        lines.push(line);
        return line;
      });
    }

    // The amount: impact's orderSubTotalPostDiscount when given; otherwise the lines' subtotals
    // (or orderSubTotalPreDiscount) less orderDiscount, which impact subtracts too.
    var post = money(take(f, 'ordersubtotalpostdiscount'), 'orderSubTotalPostDiscount', 'order.amount');
    var pre = money(take(f, 'ordersubtotalprediscount'), 'orderSubTotalPreDiscount');
    if (post != null) order.amount = post;
    else if (lines.length || pre != null) {
      var base = lines.length ? amounts : [pre];
      var a = base.indexOf(null) < 0 ? total(base, discount) : null;
      if (a != null) order.amount = a;
      else notes.push('no amount: the ' + (lines.length ? "lines' subTotals" : 'orderSubTotalPreDiscount') + ' less orderDiscount is not a decimal amount (' + JSON.stringify(base) + ' - ' + discount + ')');
    }

    // impact's event type: kept with the order, so reports can tell sales from sign-ups.
    if (tracker != null && tracker !== '') custom.actionTrackerId = String(tracker);
    var extras = rest(f);
    extras.forEach(function (k) {
      custom[k] = f[k.toLowerCase()][1];
    });
    if (extras.length) notes.push(extras.join(', ') + ': no utt field; kept in order.custom');
    // utt refuses a conversion whose custom fields exceed 8 KB: the order counts more than them.
    if (new TextEncoder().encode(JSON.stringify(custom)).length > 8192) {
      custom = tracker != null && tracker !== '' ? { actionTrackerId: String(tracker) } : {};
      notes.push('the fields kept in order.custom came to more than 8 KB, which utt refuses: they were left out');
    }
    if (Object.keys(custom).length) order.custom = custom;

    if (options && typeof options == 'object' && Object.keys(options).length)
      notes.push('options ' + JSON.stringify(options) + ' ignored: utt has no equivalent (the collector decides what counts)');
    notes.forEach(function (n) {
      warn(call + ': ' + n);
    });
    return utt('conversion', order);
  }

  var COMMANDS = { identify: identify, trackConversion: trackConversion };

  // One `ire(...)` call: answers what `utt(...)` answered (a Promise once utt.js has loaded).
  function run(args) {
    try {
      var command = args[0];
      var f = own(COMMANDS, command) && COMMANDS[command];
      if (!f) return fail("ire('" + command + "') has no utt equivalent and was ignored (mapped: identify, trackConversion)");
      return f.apply(null, Array.prototype.slice.call(args, 1));
    } catch (e) {
      return fail('internal error (' + e + ')');
    }
  }

  // impact's own tag, if it is on the page too (a parallel run during the migration): every call
  // is passed on to it as well. Already loaded, it is the current `ire`; loading later, it reads
  // the calls queued in `ire.a` and replaces `ire`, which the setter below turns into passing on.
  var impact = typeof old == 'function' && !old.a ? old : null;
  var queued = (old && old.a) || [];
  function ire() {
    if (impact) {
      try {
        impact.apply(w, arguments);
      } catch (e) {}
    } else ire.a.push(arguments);
    return run(arguments);
  }
  ire.a = queued.slice();
  ire.utt = 1;
  try {
    Object.defineProperty(w, name, {
      configurable: true,
      get: function () {
        return ire;
      },
      set: function (f) {
        if (typeof f == 'function' && f !== ire) impact = f;
      },
    });
  } catch (e) {
    w[name] = ire;
  }
  // Replay what impact's snippet queued before this file loaded, in order.
  for (var i = 0; i < queued.length; i++) run(queued[i]);
})(window);
