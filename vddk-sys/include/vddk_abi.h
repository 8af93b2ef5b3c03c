/*
 * vddk_abi.h: the VixDiskLib C ABI as this project understands it.
 *
 * Written for vddk-rs from public descriptions of the VixDiskLib API
 * (function signatures, struct layouts on Linux x86_64, constants). It is not
 * VMware's header and contains none of its text. Struct layouts are those of
 * VDDK 7.0 and later; older libraries end some structs earlier, which the
 * safe layer accounts for.
 *
 * Functions are split in two groups:
 *  - core functions every supported library (6.7+) exports; the loader
 *    refuses a library that lacks any of them;
 *  - optional functions, each declared through a function typedef named
 *    <function>Fn so that a loader can hold a nullable pointer to it.
 *
 * Platform: Linux x86_64, natural alignment, enums are 4 bytes, long is 8.
 */
#ifndef VDDK_ABI_H
#define VDDK_ABI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Scalar types                                                        */
/* ------------------------------------------------------------------ */

/* Only the low 16 bits carry the error code; mask before comparing. */
typedef uint64_t VixError;

/* C `char` used as a boolean: 0 false, 1 true. */
typedef char Bool;

#define VIXDISKLIB_SECTOR_SIZE 512
#define VIX_ERROR_CODE_MASK 0xFFFF

/* Opaque handles; their values mean nothing to a caller. */
typedef struct VixDiskLibConnectionObject *VixDiskLibConnection;
typedef struct VixDiskLibHandleStruct *VixDiskLibHandle;

/* ------------------------------------------------------------------ */
/* Callbacks                                                           */
/* ------------------------------------------------------------------ */

/* Log, warning and panic sinks: a printf format plus its arguments. */
typedef void VixDiskLibGenericLogFunc(const char *fmt, va_list args);

/* Completion of an asynchronous read or write. */
typedef void (*VixDiskLibCompletionCB)(void *cbData, VixError result);

/* Progress of a long operation; returning 0 asks it to stop. */
typedef Bool (*VixDiskLibProgressFunc)(void *progressData, int percentCompleted);

/* ------------------------------------------------------------------ */
/* Enumerations (4 bytes each)                                         */
/* ------------------------------------------------------------------ */

typedef enum {
    VIXDISKLIB_CRED_UID = 1,
    VIXDISKLIB_CRED_SESSIONID = 2,
    VIXDISKLIB_CRED_TICKETID = 3,
    VIXDISKLIB_CRED_SSPI = 4,
    VIXDISKLIB_CRED_UNKNOWN = 256
} VixDiskLibCredType;

typedef enum {
    VIXDISKLIB_SPEC_VMX = 0,
    VIXDISKLIB_SPEC_VSTORAGE_OBJECT = 1,
    VIXDISKLIB_SPEC_UNKNOWN = 2
} VixDiskLibSpecType;

typedef enum {
    VIXDISKLIB_ADAPTER_IDE = 1,
    VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC = 2,
    VIXDISKLIB_ADAPTER_SCSI_LSILOGIC = 3,
    VIXDISKLIB_ADAPTER_UNKNOWN = 256
} VixDiskLibAdapterType;

typedef enum {
    VIXDISKLIB_DISK_MONOLITHIC_SPARSE = 1,
    VIXDISKLIB_DISK_MONOLITHIC_FLAT = 2,
    VIXDISKLIB_DISK_SPLIT_SPARSE = 3,
    VIXDISKLIB_DISK_SPLIT_FLAT = 4,
    VIXDISKLIB_DISK_VMFS_FLAT = 5,
    VIXDISKLIB_DISK_STREAM_OPTIMIZED = 6,
    VIXDISKLIB_DISK_VMFS_THIN = 7,
    VIXDISKLIB_DISK_VMFS_SPARSE = 8,
    VIXDISKLIB_DISK_UNKNOWN = 256
} VixDiskLibDiskType;

/* ------------------------------------------------------------------ */
/* Constants                                                           */
/* ------------------------------------------------------------------ */

/* Open flags. */
#define VIXDISKLIB_FLAG_OPEN_UNBUFFERED 1
#define VIXDISKLIB_FLAG_OPEN_SINGLE_LINK 2
#define VIXDISKLIB_FLAG_OPEN_READ_ONLY 4
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_ZLIB 16
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_FASTLZ 32
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_SKIPZ 64
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_MASK 0x3f0

/* Virtual hardware versions. */
#define VIXDISKLIB_HWVERSION_WORKSTATION_4 3
#define VIXDISKLIB_HWVERSION_WORKSTATION_5 4
#define VIXDISKLIB_HWVERSION_ESX30 4
#define VIXDISKLIB_HWVERSION_WORKSTATION_6 6
#define VIXDISKLIB_HWVERSION_ESX4X 7
#define VIXDISKLIB_HWVERSION_ESX50 8
#define VIXDISKLIB_HWVERSION_ESX51 9
#define VIXDISKLIB_HWVERSION_ESX55 10
#define VIXDISKLIB_HWVERSION_ESX60 11
#define VIXDISKLIB_HWVERSION_ESX65 13

/* QueryAllocatedBlocks limits. */
#define VIXDISKLIB_MIN_CHUNK_SIZE 128
#define VIXDISKLIB_MAX_CHUNK_NUMBER (512 * 1024)

/* Error codes, compared after masking with VIX_ERROR_CODE_MASK. */
#define VIX_OK 0
#define VIX_E_FAIL 1
#define VIX_E_OUT_OF_MEMORY 2
#define VIX_E_INVALID_ARG 3
#define VIX_E_FILE_NOT_FOUND 4
#define VIX_E_OBJECT_IS_BUSY 5
#define VIX_E_NOT_SUPPORTED 6
#define VIX_E_FILE_ERROR 7
#define VIX_E_DISK_FULL 8
#define VIX_E_FILE_READ_ONLY 11
#define VIX_E_FILE_ALREADY_EXISTS 12
#define VIX_E_FILE_ACCESS_ERROR 13
#define VIX_E_FILE_ALREADY_LOCKED 15
#define VIX_E_BUFFER_TOOSMALL 24
#define VIX_E_AUTHENTICATION_FAIL 35
#define VIX_E_HOST_CONNECTION_LOST 36
#define VIX_E_INVALID_HANDLE 1000
#define VIX_E_HOST_USER_PERMISSIONS 3014
#define VIX_E_VM_NOT_FOUND 4000
#define VIX_E_SNAPSHOT_NOTFOUND 13003
#define VIX_E_HOST_SERVER_NOT_FOUND 14008
#define VIX_E_HOST_NETWORK_CONN_REFUSED 14009
#define VIX_E_HOST_TCP_CONN_LOST 14011
#define VIX_E_DISK_INVAL 16000
#define VIX_E_DISK_OUTOFRANGE 16007
#define VIX_E_DISK_KEY_NOTFOUND 16052
#define VIX_E_CANNOT_CONNECT_TO_HOST 18000
#define VIX_ASYNC 25000
#define VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED 26000
#define VIX_E_NET_HTTP_SSL_SECURITY 30201

/* ------------------------------------------------------------------ */
/* Structures (offsets for Linux x86_64 in comments)                   */
/* ------------------------------------------------------------------ */

typedef struct {
    uint32_t cylinders; /* 0 */
    uint32_t heads;     /* 4 */
    uint32_t sectors;   /* 8 */
} VixDiskLibGeometry;   /* 12 bytes */

typedef struct {
    char *userName;
    char *password;
} VixDiskLibUidPasswdCreds;

typedef struct {
    char *cookie;
    char *userName;
    char *key;
} VixDiskLibSessionIdCreds;

typedef union {
    VixDiskLibUidPasswdCreds uid;
    VixDiskLibSessionIdCreds sessionId;
    void *ticketId;
} VixDiskLibCreds; /* 24 bytes */

typedef struct {
    char *id;
    char *datastoreMoRef;
    char *ssId;
} VixDiskLibVStorageObjectSpec;

typedef union {
    VixDiskLibVStorageObjectSpec vStorageObjSpec;
} VixDiskLibConnectSpec; /* 24 bytes */

typedef struct {
    char *vmxSpec;               /* 0: "moref=vm-16", or NULL for local */
    char *serverName;            /* 8 */
    char *thumbPrint;            /* 16: SHA-1, 20 colon-separated hex pairs */
    long reserved1;              /* 24 */
    VixDiskLibCredType credType; /* 32 */
    VixDiskLibCreds creds;       /* 40 */
    uint32_t port;               /* 64: default 443 */
    uint32_t nfcHostPort;        /* 68: default 902 */
    char *reserved3;             /* 72: vimApiVer before 7.0 */
    char reserved4[8];           /* 80 */
    void *reserved5;             /* 88 */
    VixDiskLibConnectSpec spec;  /* 96 */
    VixDiskLibSpecType specType; /* 120 */
} VixDiskLibConnectParams;       /* 128 bytes; pre-7.0 libraries stop at 80 */

typedef struct {
    VixDiskLibGeometry biosGeo;        /* 0 */
    VixDiskLibGeometry physGeo;        /* 12 */
    uint64_t capacity;                 /* 24: sectors */
    VixDiskLibAdapterType adapterType; /* 32 */
    int numLinks;                      /* 36 */
    char *parentFileNameHint;          /* 40 */
    char *uuid;                        /* 48 */
    uint32_t logicalSectorSize;        /* 56: 7.0+ only */
    uint32_t physicalSectorSize;       /* 60: 7.0+ only */
} VixDiskLibInfo;                      /* 64 bytes */

typedef struct {
    VixDiskLibDiskType diskType;       /* 0 */
    VixDiskLibAdapterType adapterType; /* 4 */
    uint16_t hwVersion;                /* 8 */
    uint64_t capacity;                 /* 16: sectors */
    uint32_t logicalSectorSize;        /* 24: 7.0+; 0 = default */
    uint32_t physicalSectorSize;       /* 28: 7.0+; 0 = default */
} VixDiskLibCreateParams;              /* 32 bytes */

typedef struct {
    uint64_t offset; /* sectors */
    uint64_t length; /* sectors */
} VixDiskLibBlock;

typedef struct {
    uint32_t numBlocks;
    VixDiskLibBlock blocks[];
} VixDiskLibBlockList;

/* ------------------------------------------------------------------ */
/* Core functions (required)                                           */
/* ------------------------------------------------------------------ */

VixError VixDiskLib_InitEx(uint32_t majorVersion, uint32_t minorVersion,
                           VixDiskLibGenericLogFunc *log,
                           VixDiskLibGenericLogFunc *warn,
                           VixDiskLibGenericLogFunc *panic,
                           const char *libDir, const char *configFile);
void VixDiskLib_Exit(void);
const char *VixDiskLib_ListTransportModes(void);
VixError VixDiskLib_ConnectEx(const VixDiskLibConnectParams *connectParams,
                              Bool readOnly, const char *snapshotRef,
                              const char *transportModes,
                              VixDiskLibConnection *connection);
VixError VixDiskLib_Disconnect(VixDiskLibConnection connection);
VixError VixDiskLib_Open(const VixDiskLibConnection connection,
                         const char *path, uint32_t flags,
                         VixDiskLibHandle *diskHandle);
VixError VixDiskLib_Close(VixDiskLibHandle diskHandle);
VixError VixDiskLib_GetInfo(VixDiskLibHandle diskHandle, VixDiskLibInfo **info);
void VixDiskLib_FreeInfo(VixDiskLibInfo *info);
const char *VixDiskLib_GetTransportMode(VixDiskLibHandle diskHandle);
VixError VixDiskLib_Read(VixDiskLibHandle diskHandle, uint64_t startSector,
                         uint64_t numSectors, uint8_t *readBuffer);
VixError VixDiskLib_Write(VixDiskLibHandle diskHandle, uint64_t startSector,
                          uint64_t numSectors, const uint8_t *writeBuffer);
VixError VixDiskLib_ReadAsync(VixDiskLibHandle diskHandle, uint64_t startSector,
                              uint64_t numSectors, uint8_t *buffer,
                              VixDiskLibCompletionCB callback, void *cbData);
VixError VixDiskLib_WriteAsync(VixDiskLibHandle diskHandle,
                               uint64_t startSector, uint64_t numSectors,
                               const uint8_t *buffer,
                               VixDiskLibCompletionCB callback, void *cbData);
VixError VixDiskLib_Wait(VixDiskLibHandle diskHandle);
VixError VixDiskLib_Flush(VixDiskLibHandle diskHandle);
VixError VixDiskLib_Create(const VixDiskLibConnection connection,
                           const char *path,
                           const VixDiskLibCreateParams *createParams,
                           VixDiskLibProgressFunc progressFunc,
                           void *progressCallbackData);
char *VixDiskLib_GetErrorText(VixError err, const char *locale);
void VixDiskLib_FreeErrorText(char *errMsg);
VixError VixDiskLib_QueryAllocatedBlocks(VixDiskLibHandle diskHandle,
                                         uint64_t startSector,
                                         uint64_t numSectors,
                                         uint64_t chunkSize,
                                         VixDiskLibBlockList **blockList);
VixError VixDiskLib_FreeBlockList(VixDiskLibBlockList *blockList);

/* ------------------------------------------------------------------ */
/* Optional functions (looked up one by one; absence is a capability)  */
/* ------------------------------------------------------------------ */

typedef VixDiskLibConnectParams *VixDiskLib_AllocateConnectParamsFn(void);
typedef void VixDiskLib_FreeConnectParamsFn(VixDiskLibConnectParams *params);
typedef VixError VixDiskLib_PrepareForAccessFn(
    const VixDiskLibConnectParams *connectParams, const char *identity);
typedef VixError VixDiskLib_EndAccessFn(
    const VixDiskLibConnectParams *connectParams, const char *identity);
typedef VixError VixDiskLib_CleanupFn(
    const VixDiskLibConnectParams *connectParams, uint32_t *numCleanedUp,
    uint32_t *numRemaining);
typedef VixError VixDiskLib_ReadMetadataFn(VixDiskLibHandle diskHandle,
                                           const char *key, char *buf,
                                           size_t bufLen, size_t *requiredLen);
typedef VixError VixDiskLib_WriteMetadataFn(VixDiskLibHandle diskHandle,
                                            const char *key, const char *val);
typedef VixError VixDiskLib_GetMetadataKeysFn(VixDiskLibHandle diskHandle,
                                              char *keys, size_t maxLen,
                                              size_t *requiredLen);
typedef VixError VixDiskLib_CreateChildFn(VixDiskLibHandle diskHandle,
                                          const char *childPath,
                                          VixDiskLibDiskType diskType,
                                          VixDiskLibProgressFunc progressFunc,
                                          void *progressCallbackData);
typedef VixError VixDiskLib_CloneFn(const VixDiskLibConnection dstConnection,
                                    const char *dstPath,
                                    const VixDiskLibConnection srcConnection,
                                    const char *srcPath,
                                    const VixDiskLibCreateParams *createParams,
                                    VixDiskLibProgressFunc progressFunc,
                                    void *progressCallbackData, Bool overWrite);
typedef VixError VixDiskLib_GrowFn(VixDiskLibConnection connection,
                                   const char *path, uint64_t capacity,
                                   Bool updateGeometry,
                                   VixDiskLibProgressFunc progressFunc,
                                   void *progressCallbackData);
typedef VixError VixDiskLib_ShrinkFn(VixDiskLibHandle diskHandle,
                                     VixDiskLibProgressFunc progressFunc,
                                     void *progressCallbackData);
typedef VixError VixDiskLib_DefragmentFn(VixDiskLibHandle diskHandle,
                                         VixDiskLibProgressFunc progressFunc,
                                         void *progressCallbackData);
typedef VixError VixDiskLib_RenameFn(const char *srcFileName,
                                     const char *dstFileName);
typedef VixError VixDiskLib_UnlinkFn(VixDiskLibConnection connection,
                                     const char *path);
typedef VixError VixDiskLib_IsAttachPossibleFn(VixDiskLibHandle parent,
                                               VixDiskLibHandle child);
typedef VixError VixDiskLib_AttachFn(VixDiskLibHandle parent,
                                     VixDiskLibHandle child);
typedef VixError VixDiskLib_SpaceNeededForCloneFn(VixDiskLibHandle diskHandle,
                                                  VixDiskLibDiskType diskType,
                                                  uint64_t *spaceNeeded);
typedef VixError VixDiskLib_CheckRepairFn(const VixDiskLibConnection connection,
                                          const char *path, Bool repair);
typedef VixError VixDiskLib_GetConnectParamsFn(
    const VixDiskLibConnection connection,
    VixDiskLibConnectParams **connectParams);

VixDiskLib_AllocateConnectParamsFn VixDiskLib_AllocateConnectParams;
VixDiskLib_FreeConnectParamsFn VixDiskLib_FreeConnectParams;
VixDiskLib_PrepareForAccessFn VixDiskLib_PrepareForAccess;
VixDiskLib_EndAccessFn VixDiskLib_EndAccess;
VixDiskLib_CleanupFn VixDiskLib_Cleanup;
VixDiskLib_ReadMetadataFn VixDiskLib_ReadMetadata;
VixDiskLib_WriteMetadataFn VixDiskLib_WriteMetadata;
VixDiskLib_GetMetadataKeysFn VixDiskLib_GetMetadataKeys;
VixDiskLib_CreateChildFn VixDiskLib_CreateChild;
VixDiskLib_CloneFn VixDiskLib_Clone;
VixDiskLib_GrowFn VixDiskLib_Grow;
VixDiskLib_ShrinkFn VixDiskLib_Shrink;
VixDiskLib_DefragmentFn VixDiskLib_Defragment;
VixDiskLib_RenameFn VixDiskLib_Rename;
VixDiskLib_UnlinkFn VixDiskLib_Unlink;
VixDiskLib_IsAttachPossibleFn VixDiskLib_IsAttachPossible;
VixDiskLib_AttachFn VixDiskLib_Attach;
VixDiskLib_SpaceNeededForCloneFn VixDiskLib_SpaceNeededForClone;
VixDiskLib_CheckRepairFn VixDiskLib_CheckRepair;
VixDiskLib_GetConnectParamsFn VixDiskLib_GetConnectParams;

#ifdef __cplusplus
}
#endif

#endif /* VDDK_ABI_H */
