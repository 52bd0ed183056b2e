// The console's entry point: signing in and out, who is signed in, and the tabs each role may open.

import { describe, readClaims, request, session, whenUnauthorized } from "./api.js";
import { AuditPanel } from "./audit.js";
import { byId, say } from "./dom.js";
import { DocumentsPanel } from "./documents.js";
import { SearchPanel } from "./search.js";
import { TenantsPanel } from "./tenants.js";

const TABS_BY_ROLE = {
  platform_admin: ["tenants"],
  admin: ["documents", "search", "audit"],
  member: ["documents", "search"],
  viewer: ["documents", "search"],
};
const ROLE_NAMES = {
  platform_admin: "platform administrator",
  admin: "administrator",
  member: "member",
  viewer: "viewer",
};

const panels = {
  documents: new DocumentsPanel(),
  search: new SearchPanel(),
  audit: new AuditPanel(),
  tenants: new TenantsPanel((tenant) => developmentSignIn("admin", tenant.id, `administrator of ${tenant.name}`)),
};
const tabs = [...document.querySelectorAll('[role="tab"]')];
let current = null;

function banner(message) {
  const node = byId("banner");
  node.textContent = message || "";
  node.hidden = !message;
}

/** Who the token says the caller is, or an explanation of why it cannot be used. */
function identityOf(token) {
  const claims = readClaims(token);
  if (!claims) {
    return { problem: "That is not a token: a token is three parts separated by dots (a JWT)." };
  }
  if (!(claims.role in TABS_BY_ROLE)) {
    return { problem: "This token has no PHIVault role (platform_admin, admin, member or viewer)." };
  }
  if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) {
    return { problem: `This token expired at ${new Date(claims.exp * 1000).toLocaleString()}; get a new one.` };
  }
  return { role: claims.role, subject: String(claims.sub || "unknown"), tenant: claims.tenant_id || null };
}

function showSignedIn(identity) {
  const who = [`Signed in as ${identity.subject}`, ROLE_NAMES[identity.role]];
  if (identity.tenant) {
    who.push(`tenant ${identity.tenant}`);
  }
  byId("identity-text").textContent = who.join(" · ");
  byId("identity").hidden = false;
  byId("sign-in").hidden = true;
  byId("workspace").hidden = false;
  const allowed = TABS_BY_ROLE[identity.role];
  for (const panel of Object.values(panels)) {
    panel.reset(identity);
  }
  for (const tab of tabs) {
    tab.hidden = !allowed.includes(tab.dataset.panel);
  }
  current = null;
  select(allowed[0], { focus: true });
}

function showSignedOut(message) {
  if (current) {
    panels[current].deactivate();
  }
  current = null;
  byId("identity").hidden = true;
  byId("workspace").hidden = true;
  byId("sign-in").hidden = false;
  banner(message);
  byId("token-input").value = "";
  byId("token-input").focus();
}

function start(token, development) {
  const identity = identityOf(token);
  if (identity.problem) {
    return identity.problem;
  }
  session.start(token, development);
  banner("");
  showSignedIn(identity);
  return null;
}

function signOut(message) {
  session.clear();
  for (const panel of Object.values(panels)) {
    panel.reset({ role: "viewer" });
  }
  showSignedOut(message);
}

async function developmentSignIn(role, tenantId, label) {
  const message = byId("dev-message");
  try {
    const { token } = await request("POST", "/v1/dev/token", { json: tenantId ? { role, tenant_id: tenantId } : { role } });
    const problem = start(token, true);
    if (problem) {
      say(message, problem, { error: true });
    }
  } catch (error) {
    const text =
      error.status === 404
        ? "This server offers no development sign-in (it is not running with PHIVAULT_ENV=development): paste a token instead."
        : `No development token: ${describe(error)}`;
    if (byId("sign-in").hidden) {
      banner(`Could not sign in as ${label}: ${text}`);
    } else {
      say(message, text, { error: true });
    }
  }
}

function select(name, { focus = false } = {}) {
  if (current === name) {
    return;
  }
  if (current) {
    panels[current].deactivate();
  }
  current = name;
  for (const tab of tabs) {
    const selected = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    byId(tab.getAttribute("aria-controls")).hidden = !selected;
    if (selected && focus) {
      tab.focus();
    }
  }
  panels[name].activate();
}

function visibleTabs() {
  return tabs.filter((tab) => !tab.hidden);
}

for (const tab of tabs) {
  tab.addEventListener("click", () => select(tab.dataset.panel));
  tab.addEventListener("keydown", (event) => {
    const visible = visibleTabs();
    const index = visible.indexOf(tab);
    const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: visible.length - 1 };
    if (!(event.key in moves)) {
      return;
    }
    event.preventDefault();
    const target = visible[(moves[event.key] + visible.length) % visible.length];
    select(target.dataset.panel, { focus: true });
  });
}

byId("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = byId("token-input").value.trim().replace(/^Bearer\s+/i, "");
  const problem = token ? start(token, false) : "Paste a token first.";
  say(byId("token-message"), problem || "", { error: Boolean(problem) });
});

const devRole = byId("dev-role");
const devTenant = byId("dev-tenant");
devRole.addEventListener("change", () => {
  devTenant.disabled = devRole.value === "platform_admin";
  devTenant.required = !devTenant.disabled;
});
byId("dev-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const role = devRole.value;
  const tenantId = devTenant.disabled ? null : devTenant.value.trim();
  if (role !== "platform_admin" && !tenantId) {
    say(byId("dev-message"), "A tenant role needs a tenant id: sign in as platform administrator to create one.", {
      error: true,
    });
    devTenant.focus();
    return;
  }
  say(byId("dev-message"), "");
  developmentSignIn(role, tenantId, ROLE_NAMES[role]);
});

byId("sign-out").addEventListener("click", () => signOut("You are signed out: the token was removed from this tab."));

whenUnauthorized((error) => {
  if (session.token) {
    signOut(`The server did not accept your token, so you were signed out: ${error.describe()} Sign in again.`);
  }
});

if (session.token) {
  const problem = start(session.token, session.development);
  if (problem) {
    signOut(problem);
  }
}
