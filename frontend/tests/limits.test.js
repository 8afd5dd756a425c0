import { describe, expect, it } from "vitest";
import { attachmentProblems, extensionOf, fileRefusal } from "../src/features/limits.js";
import { formatSize } from "../src/sizes.js";
import { LIMITS } from "./helpers.jsx";

const file = (id, size, filename = `${id}.txt`, contentType = "text/plain") => ({
  id,
  filename,
  contentType,
  size,
  status: "ready",
});

describe("formatSize", () => {
  it.each([
    [0, "0 bytes"],
    [1, "1 byte"],
    [1023, "1023 bytes"],
    [1024, "1 KB"],
    [1536, "1.5 KB"],
    [1024 * 1024 - 1, "1 MB"],
    [10 * 1024 * 1024, "10 MB"],
    [3.25 * 1024 ** 3, "3.3 GB"],
  ])("%i bytes read %s", (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });
});

describe("attachment limits", () => {
  it("refuses a file on its own for its extension, its type or its size", () => {
    expect(extensionOf("Setup.EXE")).toBe("exe");
    expect(extensionOf(".profile")).toBe("");
    expect(fileRefusal(file("a", 10, "Setup.EXE"), LIMITS)).toBe("Files ending in .exe are not allowed");
    expect(fileRefusal(file("a", 10, "tool", "application/x-msdownload"), LIMITS)).toBe(
      "Files of type application/x-msdownload are not allowed",
    );
    expect(fileRefusal(file("a", 1001), LIMITS)).toBe("1001 bytes is over the limit of 1000 bytes for one file");
    expect(fileRefusal(file("a", 1000), LIMITS)).toBeNull();
    expect(fileRefusal(file("a", 10 ** 9, "x.exe"), null)).toBeNull();
  });

  it("names the files past the count and the total, leaving the others be", () => {
    const files = [file("a", 900), file("b", 900), file("c", 900), file("d", 600), file("e", 10)];
    expect(attachmentProblems(files, LIMITS)).toEqual({
      // a + b + c is 2700 bytes: c is over the total; d still fits (2400), then e is the fourth.
      c: "Over the limit of 2.4 KB for all attachments together",
      e: "Over the limit of 3 attachments: remove one",
    });
  });

  it("checks nothing without limits, except a file that could not be read", () => {
    expect(attachmentProblems([file("a", 10 ** 9, "x.exe"), { ...file("b", 1), status: "failed" }], null)).toEqual({
      b: "Could not read this file",
    });
  });

  it("says attachments are not accepted when none are allowed", () => {
    expect(attachmentProblems([file("a", 1)], { ...LIMITS, maxAttachments: 0 })).toEqual({
      a: "Attachments are not accepted",
    });
  });
});
