using System.Runtime.InteropServices;

namespace VirtioSharp.Interop;

/// <summary>
/// Every libc call VirtioSharp makes, in one place. Callers wrap results in <see cref="SafeFd"/> /
/// <see cref="MappedRegion"/> at once so no descriptor or mapping leaks on an error path.
/// </summary>
internal static unsafe partial class LibC
{
    private const string Lib = "libc";

    public const int PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_SHARED = 1;
    public const uint MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
    public const int F_ADD_SEALS = 1033, F_GET_SEALS = 1034;
    public const int F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    public const int MSG_CTRUNC = 0x8, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000, MSG_WAITALL = 0x100, MSG_DONTWAIT = 0x40;
    public const short POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;
    public const int EINTR = 4, EBADF = 9, EAGAIN = 11, EINVAL = 22, ENOTSOCK = 88, ENOTCONN = 107;
    public const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0x80000, SOCK_NONBLOCK = 0x800;
    public const int SO_TYPE = 3, SO_ACCEPTCONN = 30, SO_DOMAIN = 39;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CMsgHdr
    {
        public nuint Len;
        public int Level;
        public int Type;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    [LibraryImport(Lib, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MemfdCreate(string name, uint flags);

    // open is variadic (mode); with integer arguments the x86-64 and arm64 Linux calling conventions match this signature.
    [LibraryImport(Lib, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    public const int O_RDONLY = 0, O_RDWR = 2, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int FTruncate(int fd, long length);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initval, int flags);

    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buf, nuint count);

    // preadv2 with RWF_NOWAIT: a read that never blocks whatever O_NONBLOCK says (eventfd supports it from Linux 5.12).
    [LibraryImport(Lib, EntryPoint = "preadv2", SetLastError = true)]
    public static partial nint PReadV2(int fd, IoVec* iov, int iovcnt, long offset, int flags);

    public const int RWF_NOWAIT = 8, EOPNOTSUPP = 95;

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint nfds, int timeout);

    [LibraryImport(Lib, EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMsg(int sockfd, MsgHdr* msg, int flags);

    [LibraryImport(Lib, EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int sockfd, MsgHdr* msg, int flags);

    [LibraryImport(Lib, EntryPoint = "shutdown", SetLastError = true)]
    public static partial int Shutdown(int sockfd, int how);

    // fcntl is variadic; with only integer arguments the x86-64 and arm64 Linux calling conventions match this signature.
    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);

    public const int F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0x800;

    [LibraryImport(Lib, EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int GetSockOpt(int sockfd, int level, int optname, void* optval, uint* optlen);

    [LibraryImport(Lib, EntryPoint = "getpeername", SetLastError = true)]
    public static partial int GetPeerName(int sockfd, void* addr, uint* addrlen);

    [LibraryImport(Lib, EntryPoint = "socketpair", SetLastError = true)]
    public static partial int SocketPair(int domain, int type, int protocol, int* sv);

    [LibraryImport(Lib, EntryPoint = "dup", SetLastError = true)]
    public static partial int Dup(int oldfd);

    [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
    public static partial int FStat(int fd, void* statBuf);

    // ---- block storage (VirtioSharp.Storage): files, block devices, io_uring ----

    // open(2) flags. O_DIRECT differs between architectures (asm-generic/fcntl.h vs arch/arm64 uapi fcntl.h).
    public const int O_WRONLY = 1, O_CREAT = 0x40, O_EXCL = 0x80, O_DSYNC = 0x1000;
    public static readonly int O_DIRECT = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

    public const int EIO = 5, ENXIO = 6, ENOMEM = 12, EBUSY = 16, ENODEV = 19, ENOSPC = 28, EROFS = 30, ENOSYS = 38, EPERM = 1, ENOTTY = 25, EFAULT = 14;

    // fallocate(2) modes (linux/falloc.h).
    public const int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02, FALLOC_FL_ZERO_RANGE = 0x10;

    // preadv2/pwritev2(2) flags: RWF_DSYNC makes one write O_DSYNC (Linux 4.7).
    public const int RWF_HIPRI = 1, RWF_DSYNC = 2;

    // lseek(2) whence (Linux 3.1).
    public const int SEEK_SET = 0, SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;

    // Block device ioctls (linux/fs.h): _IO(0x12, n) and _IOR(0x12, 114, size_t).
    public const uint BLKSSZGET = 0x1268, BLKDISCARD = 0x1277, BLKIOMIN = 0x1278, BLKIOOPT = 0x1279, BLKPBSZGET = 0x127b, BLKZEROOUT = 0x127f;
    public const uint BLKGETSIZE64 = 0x80081272;

    // statx(2): mask bits and the file type bits of stx_mode.
    public const uint STATX_TYPE = 0x1, STATX_SIZE = 0x200, STATX_BLOCKS = 0x400, STATX_DIOALIGN = 0x2000;
    public const int AT_EMPTY_PATH = 0x1000;
    public const ushort S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFBLK = 0x6000;

    /// <summary>struct statx (linux/stat.h), 256 bytes; only the fields VirtioSharp reads are named.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    public struct Statx
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(4)] public uint BlkSize;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(48)] public ulong Blocks;
        [FieldOffset(128)] public uint RdevMajor;
        [FieldOffset(132)] public uint RdevMinor;
        // Linux 6.1: O_DIRECT alignment of user memory and of file offsets/lengths (0: no O_DIRECT on this file).
        [FieldOffset(152)] public uint DioMemAlign;
        [FieldOffset(156)] public uint DioOffsetAlign;
    }

    /// <summary>struct statfs (x86-64 and arm64: f_type first, 120 bytes); only the file system type is used.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 120)]
    public struct StatFs
    {
        public long Type;
    }

    [LibraryImport(Lib, EntryPoint = "fstatfs", SetLastError = true)]
    public static partial int FStatFs(int fd, StatFs* buf);

    // statfs(2) f_type values of file systems whose pages live in memory only.
    public const long TMPFS_MAGIC = 0x01021994, RAMFS_MAGIC = 0x858458f6, HUGETLBFS_MAGIC = 0x958458f6;

    [LibraryImport(Lib, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int StatX(int dirfd, string path, int flags, uint mask, Statx* buf);

    [LibraryImport(Lib, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int FAllocate(int fd, int mode, long offset, long len);

    [LibraryImport(Lib, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FDataSync(int fd);

    [LibraryImport(Lib, EntryPoint = "pwritev2", SetLastError = true)]
    public static partial nint PWriteV2(int fd, IoVec* iov, int iovcnt, long offset, int flags);

    [LibraryImport(Lib, EntryPoint = "pread", SetLastError = true)]
    public static partial nint PRead(int fd, void* buf, nuint count, long offset);

    [LibraryImport(Lib, EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint PWrite(int fd, void* buf, nuint count, long offset);

    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);

    // ioctl is variadic; one pointer argument is passed like a fixed one on x86-64 and arm64 Linux.
    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, void* arg);

    [LibraryImport(Lib, EntryPoint = "readv", SetLastError = true)]
    public static partial nint ReadV(int fd, IoVec* iov, int iovcnt);

    [LibraryImport(Lib, EntryPoint = "writev", SetLastError = true)]
    public static partial nint WriteV(int fd, IoVec* iov, int iovcnt);

    // TUN/TAP (linux/if_tun.h): _IOW('T', n, int) requests, interface flags and TUNSETOFFLOAD bits.
    public const uint TUNSETIFF = 0x400454ca, TUNSETOFFLOAD = 0x400454d0, TUNSETVNETHDRSZ = 0x400454d8;
    public const short IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000, IFF_MULTI_QUEUE = 0x0100;
    public const uint TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04, TUN_F_TSO_ECN = 0x08, TUN_F_UFO = 0x10;
    public const int IFNAMSIZ = 16;

    /// <summary>struct ifreq (net/if.h), 40 bytes: the interface name, then ifr_flags at the start of the union.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    public struct IfReq
    {
        [FieldOffset(0)] public fixed byte Name[16];
        [FieldOffset(16)] public short Flags;
    }

    // io_uring has no libc wrapper: syscall(2). The numbers are the same on every architecture (unified table, 5.1).
    public const long SYS_io_uring_setup = 425, SYS_io_uring_enter = 426, SYS_io_uring_register = 427;

    // syscall is variadic; glibc's implementation only moves integer registers, so a fixed signature is safe.
    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall(long number, nint a1, nint a2, nint a3, nint a4, nint a5, nint a6);

    /// <summary>struct io_uring_params (linux/io_uring.h), 120 bytes, with io_sqring_offsets and io_cqring_offsets inline.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 120)]
    public struct IoUringParams
    {
        public uint SqEntries, CqEntries, Flags, SqThreadCpu, SqThreadIdle, Features, WqFd;
        public uint Resv0, Resv1, Resv2;
        // io_sqring_offsets
        public uint SqHead, SqTail, SqRingMask, SqRingEntries, SqFlags, SqDropped, SqArray, SqResv1;
        public ulong SqUserAddr;
        // io_cqring_offsets
        public uint CqHead, CqTail, CqRingMask, CqRingEntries, CqOverflow, CqCqes, CqFlags, CqResv1;
        public ulong CqUserAddr;
    }

    /// <summary>struct io_uring_sqe (64 bytes); the unions are named after the members VirtioSharp uses.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    public struct IoUringSqe
    {
        [FieldOffset(0)] public byte Opcode;
        [FieldOffset(1)] public byte Flags;
        [FieldOffset(2)] public ushort IoPrio;
        [FieldOffset(4)] public int Fd;
        [FieldOffset(8)] public ulong Off;
        [FieldOffset(16)] public ulong Addr;
        [FieldOffset(24)] public uint Len;
        /// <summary>rw_flags (READV/WRITEV: RWF_*), fsync_flags (FSYNC: IORING_FSYNC_DATASYNC).</summary>
        [FieldOffset(28)] public uint OpFlags;
        [FieldOffset(32)] public ulong UserData;
        [FieldOffset(40)] public ushort BufIndex;
        [FieldOffset(42)] public ushort Personality;
        [FieldOffset(44)] public int SpliceFdIn;
        [FieldOffset(48)] public ulong Addr3;
        [FieldOffset(56)] public ulong Pad2;
    }

    /// <summary>struct io_uring_cqe (16 bytes without IORING_SETUP_CQE32).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 16)]
    public struct IoUringCqe
    {
        public ulong UserData;
        public int Res;
        public uint Flags;
    }

    public const byte IORING_OP_NOP = 0, IORING_OP_READV = 1, IORING_OP_WRITEV = 2, IORING_OP_FSYNC = 3, IORING_OP_FALLOCATE = 17;
    public const uint IORING_FSYNC_DATASYNC = 1;
    public const uint IORING_SETUP_CLAMP = 0x10, IORING_SETUP_SUBMIT_ALL = 0x80;
    public const uint IORING_FEAT_SINGLE_MMAP = 1, IORING_FEAT_NODROP = 2;
    public const uint IORING_ENTER_GETEVENTS = 1;
    public const uint IORING_REGISTER_EVENTFD = 4, IORING_UNREGISTER_EVENTFD = 5, IORING_REGISTER_PROBE = 8;
    public const ushort IO_URING_OP_SUPPORTED = 1;
    public const ulong IORING_OFF_SQ_RING = 0, IORING_OFF_CQ_RING = 0x8000000, IORING_OFF_SQES = 0x10000000;

    public static int Errno => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}
