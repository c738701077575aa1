// Copying to the clipboard, with the button saying it was done. Where the page is not a secure
// context (a server reached over plain http by address), the Clipboard API is missing, so the
// text goes through a selected, hidden text area instead.
export async function copyText(text, button) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    copied = document.execCommand("copy");
    area.remove();
  }
  if (!button) return copied;
  const label = button.textContent;
  button.textContent = copied ? "Copied" : "Copy failed";
  setTimeout(() => (button.textContent = label), 1500);
  return copied;
}
