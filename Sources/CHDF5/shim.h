// libhdf5 (Debian libhdf5-dev, serial build). Its type and property-list "constants" are macros
// that expand to function calls or globals Swift cannot import, so they are wrapped here.
#include <hdf5.h>

static inline hid_t fq_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t fq_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t fq_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t fq_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t fq_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t fq_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t fq_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t fq_h5p_group_create(void) { return H5P_GROUP_CREATE; }
static inline hid_t fq_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t fq_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t fq_h5s_all(void) { return H5S_ALL; }
static inline size_t fq_h5t_variable(void) { return H5T_VARIABLE; }
static inline unsigned fq_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned fq_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
/// Silences libhdf5's own error printing (we report errors ourselves, as one sentence).
static inline void fq_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
