// Deflate-aware delta for gzip files ("puffdiff"): diff the token streams, not the bits.
//
// A few changed lines in a text file change every byte of its gzip -9n output after the
// edit (Huffman tables and bit alignment move), so a byte diff of the .gz files is nearly
// as large as the file. GNU gzip's output cannot be recreated by zlib either, so
// "decompress, diff, recompress" does not give the same bytes back. Instead:
//
//   puff_gzip(gz)      rewrites the deflate stream losslessly as bytes that expose its
//                      structure: per block its header fields, the dynamic code-length
//                      header exactly as coded, then the literal/length/distance tokens
//                      as symbols (literals as themselves, matches as escape records).
//   huff_gzip(puffed)  re-encodes those bytes into exactly the original bits: canonical
//                      Huffman codes follow from the recorded lengths, and everything that
//                      is not determined by the tokens (padding bits, how length 258 was
//                      coded, gzip header and trailer bytes) is recorded raw.
//
// For every stream puff_gzip() accepts, huff_gzip(puff_gzip(x)) == x bit for bit.
// It accepts one gzip member (header with any FEXTRA/FNAME/FCOMMENT/FHCRC fields, kept
// raw) whose deflate stream decodes: stored, fixed and dynamic blocks; incomplete Huffman
// codes are accepted, over-subscribed ones, distances before the start of the stream and
// reserved symbols are Errc::corrupt. Bytes after the final block (CRC32, ISIZE, further
// members) are kept raw and not interpreted, so a multi-member file puffs only its first
// member. The CRC is not checked: the caller verifies the rebuilt file by its own hash.
//
// The delta is bsdiff(puff(base), puff(target)); make() verifies the round trip of both
// inputs and answers Errc::unsupported when either does not puff and re-huff exactly.
// apply() puffs the base, bspatches, huffs, and checks the length.
//
// Puffed format (version 1; integers LEB128 varints unless sized):
//   'p' 0x01 header_len header_bytes
//   per block:  u8 bfinal | btype << 1
//     stored:   u8 padding bits up to the byte boundary, u16le LEN, LEN bytes
//     dynamic:  u8 HLIT-257, u8 HDIST-1, u8 HCLEN-4, HCLEN+4 x u8 code-length code lengths
//               (transmission order), then the code-length symbols until HLIT+HDIST
//               lengths are defined: u8 symbol 0..18, and for 16/17/18 a u8 of extra bits
//     fixed and dynamic, tokens until end of block:
//               byte != 0xFF             literal
//               FF 80                    literal 0xFF
//               FF 81                    end of block
//               FF hi lo L  (hi < 0x80)  match, distance (hi << 8 | lo) + 1, length L + 3
//               FF 82 hi lo              match of length 258 coded as symbol 284 + 31
//   after the final block: u8 the unused high bits of the last byte, trailer_len, trailer
// Text rarely has 0xFF (UTF-8 never), so the literal stream reads like the text itself.
//
// Patch format: u8 version (1), varint puffed target size, bsdiff patch of the puffed
// streams. Memory: make() about 5x the puffed base plus both puffed streams; apply() the
// puffed base and target. Puffed gzip -9 text is about 1.6x the .gz size (Debian
// changelogs and man pages; at most 16x by construction). Linear time, about 45 MB/s of
// .gz for puff + huff.
// Thread-safe: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/error.hpp"
#include "delta/bsdiff.hpp"  // Sink

namespace mup::delta::puff {

// Cheap check: both start with the gzip magic and the deflate method (1f 8b 08). make()
// may still answer Errc::unsupported.
[[nodiscard]] bool applicable(std::span<const uint8_t> base, std::span<const uint8_t> target);

[[nodiscard]] Result<std::vector<uint8_t>> make(std::span<const uint8_t> base,
                                                std::span<const uint8_t> target, int level);

// Rebuilds exactly `target_size` bytes into `sink`; a malformed patch, or a base that does
// not puff, is Errc::corrupt. On error the sink has received nothing.
[[nodiscard]] Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                           uint64_t target_size, const Sink& sink);

// The lossless transform and its inverse. Errors: Errc::corrupt (not decodable) or
// Errc::unsupported (not gzip, or reserved header flags).
[[nodiscard]] Result<std::vector<uint8_t>> puff_gzip(std::span<const uint8_t> gz);
[[nodiscard]] Result<std::vector<uint8_t>> huff_gzip(std::span<const uint8_t> puffed);

}  // namespace mup::delta::puff
