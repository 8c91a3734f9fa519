import Foundation
import Tokenizer
let t0 = Date()
let tok = try Tokenizer(directory: CommandLine.arguments[1])
print("load", Date().timeIntervalSince(t0))
let data = FileManager.default.contents(atPath: CommandLine.arguments[2])!
let text = String(decoding: data, as: UTF8.self)
let t1 = Date()
let ids = tok.encodeParallel(text)
print("encode", Date().timeIntervalSince(t1), ids.count)
let gold = FileManager.default.contents(atPath: CommandLine.arguments[3])!
let g = gold.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
var firstDiff = -1
for i in 0..<min(g.count, ids.count) where Int32(g[i]) != ids[i] { firstDiff = i; break }
print("gold", g.count, "firstDiff", firstDiff)
if firstDiff >= 0 { print(Array(g[max(0,firstDiff-5)..<firstDiff+5]), Array(ids[max(0,firstDiff-5)..<firstDiff+5])) }
