// Open-ap_types compatibility wrapper written for this project: found before hls4ml's ap_types folder when
// FINN's own HLS code is compiled for C-simulation (see finn_s2n2.finn.hls.finn_include_flags); it forwards to
// the real ap_int.h with #include_next.
//
// finn-hlslib's LabelSelect_Batch (maxpool.h) reads `Out_T::sign_flag`, a static member that Vitis' ap_int
// types have and hls4ml's open ap_types headers lack.  Those headers derive ap_int_base from the macro
// _AP_ROOT_TYPE (ssdm_int_sim in C-simulation).  This wrapper loads ap_common.h, then points _AP_ROOT_TYPE at
// a thin subclass of ssdm_int_sim that adds `static const bool sign_flag = _AP_S` (the signedness template
// argument), and only then the real ap_int.h: every ap_int/ap_uint gets sign_flag, nothing else changes (same
// storage member V, same operations).  It also declares `half` (see below).  The headers themselves are not modified; AP_INT_MAX_W set by the
// including file before its first #include is honoured as usual.
#ifndef S2N2_AP_INT_WRAPPER_H
#define S2N2_AP_INT_WRAPPER_H

#ifndef __AP_INT_H__
#define __AP_INT_H__  // ap_decl.h accepts being included only from ap_int.h / ap_fixed.h
#include <ap_common.h>
#undef __AP_INT_H__

template <int _AP_W, bool _AP_S>
struct s2n2_ssdm_int_sim : ssdm_int_sim<_AP_W, _AP_S> {
    static const bool sign_flag = _AP_S;
};

#undef _AP_ROOT_TYPE
#define _AP_ROOT_TYPE s2n2_ssdm_int_sim

// Vitis' ap_int.h also brings the `half` type (hls_half.h); FINN's cnpy.h only compares types with it
// (std::is_same<T, half>), for which a declaration suffices.  Using half for arithmetic needs Vitis.
class half;
#endif

#include_next <ap_int.h>

#endif
