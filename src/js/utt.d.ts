// Type declarations for utt.js, the utt tracking tag (ES module and `window.utt`).

/** Configuration for `init`. Unknown keys are refused, so a typo is reported, not ignored. */
export interface Config {
  /** The site ID the collector knows. Letters, digits, `-`, `_`, `.`. */
  site: string;
  /** The collector's base URL, e.g. `https://collect.shop.example` (default: this origin). */
  collector?: string;
  /** The site's write key, if the collector requires one. */
  writeKey?: string;
  /** The attribution window in days (1–395, default 30). */
  windowDays?: number;
  /**
   * Extra click-ID parameters and their networks, e.g. `{ aff_id: 'myprogram' }`. Generic names
   * (`ref`, `via`, `clickid`, `click_id`) are not built in: list them here if your partners use them.
   */
  clickParams?: Record<string, string>;
  /** Where the journey is kept (default `cookie+local`). A store that throws degrades to the next. */
  storage?: 'cookie+local' | 'cookie' | 'local' | 'none';
  /** The cookie domain: `auto` (default: the highest domain the browser accepts) or a domain. */
  cookieDomain?: string;
  /**
   * The site's other domains, e.g. `['checkout.example.net']` (subdomains included): links and
   * forms to them carry the journey (clicks and, with consent, the visitor) in a `_uttj`
   * parameter, which the tag there adopts within 5 minutes.
   */
  linkDomains?: string[];
  /** Consent before the site says anything (default `granted`). */
  consent?: 'granted' | 'denied';
  /** While consent is denied: hold events until granted (`wait`, default) or `drop` them. */
  whileDenied?: 'wait' | 'drop';
  /** Treat the browser's Global Privacy Control signal as a denial (default false). */
  honorGpc?: boolean;
  /** Send a page view on load and on SPA navigations (default true). */
  autoPageview?: boolean;
  /** Ask a same-site collector to re-issue the cookie server-side (Safari's cap on script cookies). */
  serverCookie?: boolean;
  /** Log every decision to the console (also `?utt_debug=1` in the URL). */
  debug?: boolean;
  /** Minutes of inactivity that end a session (default 30). */
  sessionTimeoutMinutes?: number;
}

/** A money amount exactly as you have it: a number, or a decimal string such as `"49.90"`. */
export type Amount = number | string;

/** One order line. */
export interface Item {
  sku?: string;
  name?: string;
  price?: Amount;
  quantity?: number;
  category?: string;
}

/** A conversion. `orderId` is the deduplication key: the same order is never counted twice. */
export interface Order {
  orderId: string | number;
  amount?: Amount;
  /** ISO 4217, e.g. `EUR`. */
  currency?: string;
  items?: Item[];
  promoCode?: string;
  customerStatus?: 'new' | 'returning';
  discount?: Amount;
  /** Your own fields (a JSON object, at most 8 KB). */
  custom?: Record<string, unknown>;
}

/** Who the visitor is. The email is normalised and SHA-256-hashed in the browser; it never leaves it. */
export interface Customer {
  customerId?: string | number;
  email?: string;
}

/** What a call did. Calls never throw and never reject: errors come back here. */
export interface Answer {
  ok: boolean;
  /**
   * `queued` (durably queued; `id` is the event ID), `duplicate` (an order already sent),
   * `held` (waiting for consent), `dropped` (consent denied, `whileDenied: 'drop'`, with
   * `ok: true`; or not kept because the outbound queue's 1 MB budget is used up, with `ok: false`
   * and the reason in `error`), `ready` (init), `done`, or `error` (see `error`).
   */
  status: 'queued' | 'duplicate' | 'held' | 'dropped' | 'ready' | 'done' | 'error';
  id?: string;
  orderId?: string;
  version?: string;
  /**
   * For errors: `field: reason`, e.g. `order.currency: must be an ISO 4217 code like EUR` (the
   * production tag answers a code, which the loader turns into this sentence from
   * `utt_texts.js`, loaded only when a call is refused); for a
   * call dropped because the queue is full, the reason.
   */
  error?: string;
}

/** A captured click, as the debug page shows it. */
export interface ClickState {
  param: string;
  network: string;
  value: string;
  at: number;
  path: string;
  ref?: string;
  utm?: Record<string, string>;
  expiresAt: number;
  expired: boolean;
  first: boolean;
  last: boolean;
  inCookie: boolean;
  inLocalStorage: boolean;
}

/**
 * What the tag knows. The production tag (`utt.js`) answers `ready`, `queued`, `held` and
 * `consent` only; the debug build (`utt_debug.js`, loaded by the debug page and `?utt_debug=1`)
 * answers everything below.
 */
export interface State {
  ready: boolean;
  /** Events waiting to be sent (persisted, not yet acknowledged by the collector). */
  queued?: number;
  version?: string;
  config?: Record<string, unknown>;
  consent?: 'granted' | 'denied';
  visitor?: string;
  session?: string;
  clicks?: ClickState[];
  rejected?: { param: string; reason: string }[];
  queue?: { id: string; conversion: boolean; attempts: number; notBefore: number; inFlight: boolean; event: unknown }[];
  held?: number;
  /**
   * Calls answered `dropped` on this page because the queue's budget (1 MB, of which page views
   * and custom events may use 800 KB) or the 1,000 events held for consent were used up.
   */
  dropped?: number;
  sends?: {
    at: number;
    via: 'fetch' | 'beacon';
    events: number;
    status: number;
    delivered: number;
    retrying: number;
    dropped: { id: string; reason: string }[];
  }[];
  orders?: string[];
}

/** The command API: `utt('conversion', {...})`. */
export interface Utt {
  (command: 'init', config: Config): Promise<Answer>;
  (command: 'pageview', props?: Record<string, unknown>): Promise<Answer>;
  (command: 'conversion', order: Order): Promise<Answer>;
  (command: 'identify', customer: Customer): Promise<Answer>;
  (command: 'consent', choice: 'granted' | 'denied'): Promise<Answer>;
  (command: 'event', name: string, props?: Record<string, unknown>): Promise<Answer>;
  (command: 'flush'): Promise<Answer>;
  /** Everything the tag knows right now. */
  state(): State;
  /** Resolves once the wasm has started. */
  ready: Promise<void>;
  /** The tag's version (`''` until the wasm has started). */
  version(): string;
}

export declare const utt: Utt;
export declare function init(config: Config): Promise<Answer>;
export declare function pageview(props?: Record<string, unknown>): Promise<Answer>;
export declare function conversion(order: Order): Promise<Answer>;
export declare function identify(customer: Customer): Promise<Answer>;
export declare function consent(choice: 'granted' | 'denied'): Promise<Answer>;
export declare function event(name: string, props?: Record<string, unknown>): Promise<Answer>;
export declare function flush(): Promise<Answer>;
export declare function state(): State;

declare global {
  interface Window {
    utt: Utt;
  }
}
