import CHDF5
import Foundation

/// Errors of the calibration stage. Each reads as one sentence naming the file and the problem.
public enum CalibrationError: Error, Sendable, Equatable, CustomStringConvertible {
    case hdf5(path: String, operation: String)
    case missing(path: String, object: String)
    case wrongDataset(path: String, name: String, reason: String)
    case notEnoughTokens(path: String, found: Int, needed: Int, samples: Int, seqLen: Int)
    case invalidText(path: String, reason: String)
    case invalidJSONLines(path: String, line: Int, reason: String)
    case exists(path: String)
    case modelMismatch(path: String, reason: String)
    /// A statistics file refused before libhdf5 reads it (integrity block).
    case damaged(path: String, reason: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .hdf5(let p, let op):
            return "\(p): HDF5 error while \(op) (not an HDF5 file, unreadable, or the folder is not writable)."
        case .missing(let p, let o): return "\(p): '\(o)' is missing."
        case .wrongDataset(let p, let n, let r): return "\(p): dataset '\(n)' \(r)."
        case .notEnoughTokens(let p, let f, let n, let s, let l):
            return "\(p): the calibration data has \(f) tokens but \(s) samples × \(l) tokens need \(n)."
        case .invalidText(let p, let r): return "\(p): \(r)."
        case .invalidJSONLines(let p, let l, let r): return "\(p): line \(l): \(r)."
        case .exists(let p): return "\(p): the output file already exists (pass --force to overwrite)."
        case .modelMismatch(let p, let r): return "\(p): \(r)."
        case .damaged(let p, let r): return "\(p): \(r)."
        case .writeFailed(let p, let r): return "\(p): cannot write: \(r)."
        }
    }
}

/// A thin, throwing wrapper over the libhdf5 C API: one open file, groups, float32 datasets
/// (chunked, deflate), scalar UTF-8 string and int64 attributes.
public final class HDF5File {
    public let path: String
    let id: hid_t

    private init(path: String, id: hid_t) { self.path = path; self.id = id }

    /// `userBlock`: bytes reserved at the start of the file for the caller (0, or a power of two ≥ 512).
    /// `inMemory`: the file lives in memory only (libhdf5's core driver, nothing written to `path`);
    /// `image()` returns its bytes for the caller to write. libhdf5 reports a failed write only as
    /// a generic error, or not at all when its buffered close fails, so writers that must say "No
    /// space left on device" write the image themselves.
    public static func create(
        _ path: String, userBlock: Int = 0, inMemory: Bool = false
    ) throws(CalibrationError) -> HDF5File {
        fq_h5_quiet()
        // No object modification times: the same statistics give the same bytes on every run.
        let fcpl = H5Pcreate(fq_h5p_file_create())
        H5Pset_obj_track_times(fcpl, false)
        if userBlock > 0 { H5Pset_userblock(fcpl, hsize_t(userBlock)) }
        defer { H5Pclose(fcpl) }
        var fapl = fq_h5p_default()
        if inMemory {
            fapl = H5Pcreate(fq_h5p_file_access())
            H5Pset_fapl_core(fapl, 1 << 20, false)
        }
        defer { if inMemory { H5Pclose(fapl) } }
        let id = H5Fcreate(path, fq_h5f_acc_trunc(), fcpl, fapl)
        guard id >= 0 else { throw .hdf5(path: path, operation: "creating the file") }
        return HDF5File(path: path, id: id)
    }

    public static func open(_ path: String) throws(CalibrationError) -> HDF5File {
        fq_h5_quiet()
        guard FileManager.default.fileExists(atPath: path) else {
            throw .hdf5(path: path, operation: "opening the file (it does not exist)")
        }
        let id = H5Fopen(path, fq_h5f_acc_rdonly(), fq_h5p_default())
        guard id >= 0 else { throw .hdf5(path: path, operation: "opening the file") }
        return HDF5File(path: path, id: id)
    }

    public func close() { H5Fclose(id) }

    /// The bytes of the file as it stands (flushed first): for in-memory files.
    public func image() throws(CalibrationError) -> [UInt8] {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw .hdf5(path: path, operation: "flushing the file") }
        let n = H5Fget_file_image(id, nil, 0)
        guard n > 0 else { throw .hdf5(path: path, operation: "taking the file's image") }
        var bytes = [UInt8](repeating: 0, count: n)
        let m = bytes.withUnsafeMutableBytes { H5Fget_file_image(id, $0.baseAddress, n) }
        guard m == n else { throw .hdf5(path: path, operation: "taking the file's image") }
        return bytes
    }

    /// Creates every missing group along a slash-separated path; returns nothing (groups are reopened by path).
    public func createGroups(_ groupPath: String) throws(CalibrationError) {
        var current = ""
        for part in groupPath.split(separator: "/") {
            current += (current.isEmpty ? "" : "/") + part
            if H5Lexists(id, current, fq_h5p_default()) > 0 { continue }
            let gcpl = H5Pcreate(fq_h5p_group_create())
            H5Pset_obj_track_times(gcpl, false)
            let g = H5Gcreate2(id, current, fq_h5p_default(), gcpl, fq_h5p_default())
            H5Pclose(gcpl)
            guard g >= 0 else { throw .hdf5(path: path, operation: "creating group '\(current)'") }
            H5Gclose(g)
        }
    }

    public func exists(_ objectPath: String) -> Bool {
        var current = ""
        for part in objectPath.split(separator: "/") {
            current += (current.isEmpty ? "" : "/") + part
            if H5Lexists(id, current, fq_h5p_default()) <= 0 { return false }
        }
        return true
    }

    /// Writes a float32 dataset of the given shape (chunked as one chunk, deflate level 4).
    public func writeFloat32(_ name: String, _ values: [Float], shape: [Int]) throws(CalibrationError) {
        try writeFloat(name, values, shape: shape, type: fq_h5t_native_float())
    }

    /// Writes a float64 dataset of the given shape (chunked as one chunk, deflate level 4).
    public func writeFloat64(_ name: String, _ values: [Double], shape: [Int]) throws(CalibrationError) {
        try writeFloat(name, values, shape: shape, type: fq_h5t_native_double())
    }

    private func writeFloat<T>(_ name: String, _ values: [T], shape: [Int], type: hid_t) throws(CalibrationError) {
        precondition(shape.reduce(1, *) == values.count)
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        let dcpl = H5Pcreate(fq_h5p_dataset_create())
        defer { H5Sclose(space); H5Pclose(dcpl) }
        H5Pset_chunk(dcpl, Int32(dims.count), &dims)
        H5Pset_deflate(dcpl, 4)
        H5Pset_obj_track_times(dcpl, false)
        let ds = H5Dcreate2(id, name, type, space, fq_h5p_default(), dcpl, fq_h5p_default())
        guard ds >= 0 else { throw .hdf5(path: path, operation: "creating dataset '\(name)'") }
        defer { H5Dclose(ds) }
        let status = values.withUnsafeBufferPointer {
            H5Dwrite(ds, type, fq_h5s_all(), fq_h5s_all(), fq_h5p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw .hdf5(path: path, operation: "writing dataset '\(name)'") }
    }

    /// Writes an int32 dataset (used for pre-tokenized calibration windows, dataset `tokens`).
    public func writeInt32(_ name: String, _ values: [Int32], shape: [Int]) throws(CalibrationError) {
        precondition(shape.reduce(1, *) == values.count)
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        let dcpl = H5Pcreate(fq_h5p_dataset_create())
        H5Pset_obj_track_times(dcpl, false)
        defer { H5Sclose(space); H5Pclose(dcpl) }
        let ds = H5Dcreate2(id, name, fq_h5t_native_int32(), space, fq_h5p_default(), dcpl, fq_h5p_default())
        guard ds >= 0 else { throw .hdf5(path: path, operation: "creating dataset '\(name)'") }
        defer { H5Dclose(ds) }
        let status = values.withUnsafeBufferPointer {
            H5Dwrite(ds, fq_h5t_native_int32(), fq_h5s_all(), fq_h5s_all(), fq_h5p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw .hdf5(path: path, operation: "writing dataset '\(name)'") }
    }

    /// Shape and element class/size of a dataset.
    public func datasetInfo(
        _ name: String
    ) throws(CalibrationError) -> (shape: [Int], isFloat: Bool, isInteger: Bool, size: Int) {
        guard exists(name) else { throw .missing(path: path, object: name) }
        let ds = H5Dopen2(id, name, fq_h5p_default())
        guard ds >= 0 else { throw .hdf5(path: path, operation: "opening dataset '\(name)'") }
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds), type = H5Dget_type(ds)
        defer { H5Sclose(space); H5Tclose(type) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        let cls = H5Tget_class(type)
        return (dims.prefix(rank).map { Int($0) }, cls == H5T_FLOAT, cls == H5T_INTEGER, Int(H5Tget_size(type)))
    }

    public func readFloat32(_ name: String, shape: [Int]) throws(CalibrationError) -> [Float] {
        try checkFloat(name, bytes: 4, shape: shape)
        return try read(name, count: shape.reduce(1, *), memType: fq_h5t_native_float(), zero: Float(0))
    }

    public func readFloat64(_ name: String, shape: [Int]) throws(CalibrationError) -> [Double] {
        try checkFloat(name, bytes: 8, shape: shape)
        return try read(name, count: shape.reduce(1, *), memType: fq_h5t_native_double(), zero: Double(0))
    }

    /// Refuses a dataset that is not a float of `bytes` bytes with exactly `shape`.
    private func checkFloat(_ name: String, bytes: Int, shape: [Int]) throws(CalibrationError) {
        let info = try datasetInfo(name)
        guard info.isFloat && info.size == bytes else {
            throw .wrongDataset(path: path, name: name, reason: "is not float\(bytes * 8)")
        }
        guard info.shape == shape else {
            throw .wrongDataset(path: path, name: name, reason: "has shape \(info.shape), expected \(shape)")
        }
    }

    public func readInt32(_ name: String, count: Int) throws(CalibrationError) -> [Int32] {
        try read(name, count: count, memType: fq_h5t_native_int32(), zero: Int32(0))
    }

    private func read<T>(_ name: String, count: Int, memType: hid_t, zero: T) throws(CalibrationError) -> [T] {
        let ds = H5Dopen2(id, name, fq_h5p_default())
        guard ds >= 0 else { throw .hdf5(path: path, operation: "opening dataset '\(name)'") }
        defer { H5Dclose(ds) }
        var out = [T](repeating: zero, count: count)
        let status = out.withUnsafeMutableBufferPointer {
            H5Dread(ds, memType, fq_h5s_all(), fq_h5s_all(), fq_h5p_default(), $0.baseAddress)
        }
        guard status >= 0 else { throw .hdf5(path: path, operation: "reading dataset '\(name)'") }
        return out
    }

    /// Writes a scalar variable-length UTF-8 string attribute on an object ("/" for the root).
    public func setString(_ object: String, _ name: String, _ value: String) throws(CalibrationError) {
        let type = H5Tcopy(fq_h5t_c_s1())
        H5Tset_size(type, fq_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        let space = H5Screate(H5S_SCALAR)
        defer { H5Tclose(type); H5Sclose(space) }
        let attr = H5Acreate_by_name(
            id, object, name, type, space, fq_h5p_default(), fq_h5p_default(), fq_h5p_default())
        guard attr >= 0 else { throw .hdf5(path: path, operation: "creating attribute '\(name)' on '\(object)'") }
        defer { H5Aclose(attr) }
        let status = value.withCString { c -> herr_t in
            var p: UnsafePointer<CChar>? = c
            return H5Awrite(attr, type, &p)
        }
        guard status >= 0 else { throw .hdf5(path: path, operation: "writing attribute '\(name)'") }
    }

    public func setInt64(_ object: String, _ name: String, _ value: Int64) throws(CalibrationError) {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate_by_name(
            id, object, name, fq_h5t_native_int64(), space, fq_h5p_default(), fq_h5p_default(), fq_h5p_default())
        guard attr >= 0 else { throw .hdf5(path: path, operation: "creating attribute '\(name)' on '\(object)'") }
        defer { H5Aclose(attr) }
        var v = value
        guard H5Awrite(attr, fq_h5t_native_int64(), &v) >= 0 else {
            throw .hdf5(path: path, operation: "writing attribute '\(name)'")
        }
    }

    public func string(_ object: String, _ name: String) throws(CalibrationError) -> String {
        guard H5Aexists_by_name(id, object, name, fq_h5p_default()) > 0 else {
            throw .missing(path: path, object: "\(object)@\(name)")
        }
        let attr = H5Aopen_by_name(id, object, name, fq_h5p_default(), fq_h5p_default())
        guard attr >= 0 else { throw .hdf5(path: path, operation: "opening attribute '\(name)'") }
        let type = H5Tcopy(fq_h5t_c_s1())
        H5Tset_size(type, fq_h5t_variable())
        H5Tset_cset(type, H5T_CSET_UTF8)
        defer { H5Aclose(attr); H5Tclose(type) }
        var p: UnsafeMutablePointer<CChar>? = nil
        guard H5Aread(attr, type, &p) >= 0, let p else {
            throw .hdf5(path: path, operation: "reading attribute '\(name)'")
        }
        defer { H5free_memory(p) }
        return String(cString: p)
    }

    public func int64(_ object: String, _ name: String) throws(CalibrationError) -> Int64 {
        guard H5Aexists_by_name(id, object, name, fq_h5p_default()) > 0 else {
            throw .missing(path: path, object: "\(object)@\(name)")
        }
        let attr = H5Aopen_by_name(id, object, name, fq_h5p_default(), fq_h5p_default())
        guard attr >= 0 else { throw .hdf5(path: path, operation: "opening attribute '\(name)'") }
        defer { H5Aclose(attr) }
        var v: Int64 = 0
        guard H5Aread(attr, fq_h5t_native_int64(), &v) >= 0 else {
            throw .hdf5(path: path, operation: "reading attribute '\(name)'")
        }
        return v
    }
}
