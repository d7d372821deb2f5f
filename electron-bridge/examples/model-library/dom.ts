// A tiny DOM toolkit: build elements, and update keyed lists in place so a re-render
// never replaces the button under the keyboard focus or a progress bar mid-animation.

type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string | null)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value);
    else if (value === true) el.setAttribute(name, '');
    else if (value !== false && value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null) el.append(child);
  return el;
}

/** Set text only when it changed (screen readers re-announce live regions on every write). */
export function text(el: Element, value: string): void {
  if (el.textContent !== value) el.textContent = value;
}

export function attr(el: Element, name: string, value: string | null): void {
  if (value === null) el.removeAttribute(name);
  else if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** Make `container`'s children match `items`, by key: create new ones, update all, drop gone ones, keep order. */
export function syncList<T, E extends HTMLElement>(
  container: HTMLElement,
  items: readonly T[],
  key: (item: T) => string,
  create: (item: T) => E,
  update: (el: E, item: T) => void,
): void {
  const existing = new Map<string, E>();
  for (const child of [...container.children] as E[]) {
    const k = child.dataset.key;
    if (k !== undefined) existing.set(k, child);
  }
  let previous: Element | null = null;
  const keep = new Set<string>();
  for (const item of items) {
    const k = key(item);
    keep.add(k);
    let el = existing.get(k);
    if (!el) {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const expected: Element | null = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== el) container.insertBefore(el, expected);
    previous = el;
  }
  for (const [k, el] of existing) if (!keep.has(k)) el.remove();
}
