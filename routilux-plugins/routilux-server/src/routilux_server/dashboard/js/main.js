// The router: #/flows, #/flows/NAME, #/jobs?status=&flow=, #/jobs/ID, #/plugins, #/login.

import { clearKey, getKey, setAuthFailureHandler } from "./api.js";
import { clear } from "./dom.js";
import { errorBox, flowsView, flowView, jobsView, jobView, loginView, pluginsView } from "./views.js";

const main = document.getElementById("main");
const logout = document.getElementById("logout");
let cleanup = () => {};
let loginMessage = null;
let generation = 0;

function parse(hash) {
  const raw = hash.replace(/^#/, "") || "/flows";
  const [path, qs] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(qs || "") };
}

async function route() {
  cleanup();
  cleanup = () => {};
  const gen = ++generation;
  const { parts, query } = parse(location.hash);
  clear(main);
  // Each route renders into its own box: a view still awaiting the API when the next route
  // starts appends to its detached box, never into the new page (no doubled content).
  const page = document.createElement("div");
  page.className = "page";
  main.append(page);
  const loggedIn = Boolean(getKey());
  logout.hidden = !loggedIn;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === parts[0]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!loggedIn || parts[0] === "login") {
    const next = parts[0] === "login" ? query.get("next") : location.hash;
    document.title = "Log in · Routilux";
    const done = (target) => {
      if (location.hash === target) route();
      else location.hash = target;
    };
    cleanup = loginView(page, { next, message: loginMessage, done });
    loginMessage = null;
    return;
  }
  let view;
  let args = {};
  if (parts[0] === "flows" && parts[1]) [view, args] = [flowView, { name: parts[1] }];
  else if (parts[0] === "flows") view = flowsView;
  else if (parts[0] === "jobs" && parts[1]) [view, args] = [jobView, { id: parts[1] }];
  else if (parts[0] === "jobs") [view, args] = [jobsView, { query }];
  else if (parts[0] === "plugins") view = pluginsView;
  else {
    location.replace("#/flows");
    return;
  }
  try {
    const done = await view(page, args);
    if (gen !== generation) done();
    else cleanup = done;
  } catch (err) {
    if (gen === generation) page.append(errorBox(err));
  }
  if (gen === generation) {
    const h1 = main.querySelector("h1");
    document.title = `${h1 ? h1.textContent : "Routilux"} · Routilux`;
    // move focus to the new page's heading (keyboard and screen reader users), not on first load
    if (h1 && route.moved) h1.focus();
    route.moved = true;
  }
}

setAuthFailureHandler((message) => {
  clearKey();
  loginMessage = message;
  if (!location.hash.startsWith("#/login")) location.hash = `#/login?next=${encodeURIComponent(location.hash)}`;
  else route();
});

logout.addEventListener("click", () => {
  clearKey();
  location.hash = "#/login";
});

window.addEventListener("hashchange", route);
route();
