// What both Cinny drivers (driver.mjs, driver16.mjs) do the same way in Cinny's page.
import { check } from './harness.mjs';

// How long a step waits for the page (STEP_WAIT_MS overrides it).
export const WAIT = Number(process.env.STEP_WAIT_MS || 20000);

// Cinny's dialogs have their title (h2 or h4) in a header whose last button is "close".
const DIALOG_TITLES = '[role=dialog] h2, [role=dialog] h4';

export async function closeDialog(page, title) {
  const closed = await page.evaluate(
    (selector, wanted) => {
      const head = Array.from(document.querySelectorAll(selector))
        .filter((h) => h.innerText.trim() === wanted)
        .pop();
      if (!head) return false;
      let header = head.parentElement;
      while (header && !header.querySelector('button')) header = header.parentElement;
      const buttons = header.querySelectorAll('button');
      buttons[buttons.length - 1].click();
      return true;
    },
    DIALOG_TITLES,
    title,
  );
  check(closed, `no dialog "${title}" to close`);
  await page.waitForFunction(
    (selector, wanted) =>
      !Array.from(document.querySelectorAll(selector)).some((h) => h.innerText.trim() === wanted),
    { timeout: WAIT },
    DIALOG_TITLES,
    title,
  );
}
