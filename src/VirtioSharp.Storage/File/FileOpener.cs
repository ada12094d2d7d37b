using System.Numerics;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Storage;

/// <summary>
/// Opens an image for a <see cref="FileStorage"/> and finds out what it is: regular file or block device, size,
/// O_DIRECT alignment (statx STATX_DIOALIGN), sector sizes (BLKSSZGET/BLKPBSZGET/BLKIOOPT), whether holes can be punched.
/// </summary>
internal static unsafe class FileOpener
{
    public readonly record struct Opened(FileTarget Target, BlockStorageInfo Info);

    public static Opened Open(FileStorageOptions o, FileStorageStats stats)
    {
        int flags = (o.ReadOnly ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC;
        if (o.Cache == FileCacheMode.None) flags |= LibC.O_DIRECT;
        // Writethrough: O_DSYNC makes every write (every engine, bounced or not) durable before it returns, open(2).
        if (o.Cache == FileCacheMode.Writethrough) flags |= LibC.O_DSYNC;
        int fd = LibC.Open(o.Path, flags, 0);
        if (fd < 0)
        {
            int e = LibC.Errno;
            if (e == 2) throw new FileNotFoundException($"block image '{o.Path}' does not exist; create it first (e.g. truncate -s 64M {o.Path})", o.Path);
            if (e == LibC.EINVAL && o.Cache == FileCacheMode.None)
                throw new IOException($"cache=none: the file system of '{o.Path}' does not support O_DIRECT ({LibC.Describe(e)}); use cache=writeback");
            throw new IOException($"opening '{o.Path}' failed: {LibC.Describe(e)}");
        }
        var handle = new SafeFd(fd);
        try { return Inspect(handle, o, stats); }
        catch { handle.Dispose(); throw; }
    }

    private static Opened Inspect(SafeFd handle, FileStorageOptions o, FileStorageStats stats)
    {
        int fd = handle.Fd;
        LibC.Statx st;
        if (LibC.StatX(fd, "", LibC.AT_EMPTY_PATH, LibC.STATX_TYPE | LibC.STATX_SIZE | LibC.STATX_BLOCKS | LibC.STATX_DIOALIGN, &st) != 0)
            throw new IOException($"statx of '{o.Path}' failed: {LibC.Describe(LibC.Errno)}");
        int type = st.Mode & LibC.S_IFMT;
        bool blockDevice = type == LibC.S_IFBLK;
        if (!blockDevice && type != LibC.S_IFREG)
            throw new IOException($"'{o.Path}' is neither a regular file nor a block device (mode {st.Mode:x})");
        bool direct = o.Cache == FileCacheMode.None;

        uint sector = 512, physical = 0, optimal = 0;
        ulong size = st.Size;
        if (blockDevice)
        {
            ulong bytes;
            if (LibC.Ioctl(fd, LibC.BLKGETSIZE64, &bytes) != 0) throw new IOException($"BLKGETSIZE64 on '{o.Path}' failed: {LibC.Describe(LibC.Errno)}");
            size = bytes;
            int v;
            if (LibC.Ioctl(fd, LibC.BLKSSZGET, &v) == 0 && v > 0) sector = (uint)v;
            if (LibC.Ioctl(fd, LibC.BLKPBSZGET, &v) == 0 && v > 0) physical = (uint)v;
            if (LibC.Ioctl(fd, LibC.BLKIOOPT, &v) == 0 && v > 0) optimal = (uint)v;
        }
        else if (IsUsablePowerOfTwo(st.BlkSize))
        {
            // A file system block: writes smaller than this are read-modify-write in the page cache or the fs.
            physical = st.BlkSize;
        }

        // O_DIRECT alignment: statx says (Linux 6.1); else the sector size (blocks) or 512 (files), io_uring/open(2) notes.
        uint memAlign = 1, offsetAlign = 1;
        if (direct)
        {
            if ((st.Mask & LibC.STATX_DIOALIGN) != 0)
            {
                if (st.DioOffsetAlign == 0) throw new IOException($"cache=none: O_DIRECT is not supported for '{o.Path}' (statx reports no DIO alignment); use cache=writeback");
                memAlign = st.DioMemAlign; offsetAlign = st.DioOffsetAlign;
            }
            else memAlign = offsetAlign = sector;
        }

        uint logical = Math.Max(blockDevice ? sector : 512, offsetAlign);
        if (o.LogicalBlockSize != 0)
        {
            if (o.LogicalBlockSize < offsetAlign)
                throw new ArgumentException($"logical block size {o.LogicalBlockSize} is smaller than the {offsetAlign}-byte alignment O_DIRECT needs on '{o.Path}'; use {offsetAlign} or cache=writeback");
            logical = o.LogicalBlockSize;
        }
        if (physical < logical) physical = logical;

        bool canPunch = false;
        uint discardAlign = 0;
        if (!o.ReadOnly)
        {
            if (blockDevice) (canPunch, discardAlign) = BlockDiscard(st.RdevMajor, st.RdevMinor);
            else
            {
                canPunch = ProbePunch(fd, size);
                discardAlign = IsUsablePowerOfTwo(st.BlkSize) ? st.BlkSize : 0;
            }
        }
        if (discardAlign != 0 && discardAlign < logical) discardAlign = logical;

        bool memoryBacked = !blockDevice && IsMemoryBacked(fd);
        var target = new FileTarget(handle, o.Path, blockDevice, o.Cache, o.ReadOnly, memAlign, offsetAlign, stats) { CanPunch = canPunch, MemoryBacked = memoryBacked };
        string cache = o.Cache switch
        {
            FileCacheMode.None => $"cache=none (O_DIRECT, alignment: memory {memAlign}, offset {offsetAlign})",
            FileCacheMode.Writethrough => "cache=writethrough (O_DSYNC)",
            FileCacheMode.Unsafe => "cache=unsafe (flush ignored)",
            _ => "cache=writeback",
        };
        var info = new BlockStorageInfo
        {
            Size = size & ~(ulong)(logical - 1),
            ReadOnly = o.ReadOnly,
            LogicalBlockSize = logical,
            PhysicalBlockSize = physical,
            OptimalIoSize = optimal,
            SupportsDiscard = canPunch,
            SupportsWriteZeroes = !o.ReadOnly,
            WriteZeroesMayUnmap = canPunch,
            DiscardAlignment = discardAlign,
            // Writethrough writes are durable on completion: no cache to flush. Unsafe keeps one (and ignores flushes):
            // saying so is the truthful part; that its flushes do nothing is what "unsafe" means. Read-only has nothing to flush.
            VolatileCache = !o.ReadOnly && o.Cache != FileCacheMode.Writethrough,
            Description = $"{o.Path} ({(blockDevice ? "block device" : "regular file")}, {size} bytes{(o.ReadOnly ? ", read-only" : "")}), " +
                          $"{cache}, logical block {logical}, discard {(canPunch ? "punches holes" : "unsupported")}" +
                          (memoryBacked ? ", memory-backed file system" : ""),
        };
        return new Opened(target, info);
    }

    /// <summary>tmpfs, ramfs or hugetlbfs (fstatfs f_type); false if fstatfs fails (then nothing is assumed).</summary>
    private static bool IsMemoryBacked(int fd)
    {
        LibC.StatFs sf;
        if (LibC.FStatFs(fd, &sf) != 0) return false;
        return sf.Type is LibC.TMPFS_MAGIC or LibC.RAMFS_MAGIC or LibC.HUGETLBFS_MAGIC;
    }

    private static bool IsUsablePowerOfTwo(uint v) => v >= 512 && v <= 1 << 20 && BitOperations.IsPow2(v);

    /// <summary>
    /// Whether fallocate(PUNCH_HOLE|KEEP_SIZE) works here, tried once past the end of the file, where it changes nothing
    /// (file systems check the mode before the range: EOPNOTSUPP where punching is not implemented, e.g. ext3-style
    /// files, old NFS).
    /// </summary>
    private static bool ProbePunch(int fd, ulong size)
    {
        ulong at = (size + (1 << 20)) & ~((1UL << 20) - 1);
        int r;
        do r = LibC.FAllocate(fd, LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, (long)at, 4096);
        while (r != 0 && LibC.Errno == LibC.EINTR);
        return r == 0;
    }

    /// <summary>A block device discards if its queue says so (sysfs queue/discard_max_bytes, queue/discard_granularity).</summary>
    private static (bool, uint) BlockDiscard(uint major, uint minor)
    {
        string dev = $"/sys/dev/block/{major}:{minor}";
        // A partition has no queue directory of its own; its disk's is one level up.
        string queue = Directory.Exists($"{dev}/queue") ? $"{dev}/queue" : $"{dev}/../queue";
        ulong max = ReadSys($"{queue}/discard_max_bytes");
        return (max > 0, (uint)Math.Min(ReadSys($"{queue}/discard_granularity"), uint.MaxValue));
    }

    private static ulong ReadSys(string path)
    {
        try { return ulong.TryParse(File.ReadAllText(path).Trim(), out ulong v) ? v : 0; }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    /// <summary>The size now: fstat for a file, BLKGETSIZE64 for a block device.</summary>
    public static ulong QuerySize(FileTarget t)
    {
        bool added = false;
        try
        {
            t.Handle.DangerousAddRef(ref added);
            if (t.IsBlockDevice)
            {
                ulong bytes;
                return LibC.Ioctl(t.Fd, LibC.BLKGETSIZE64, &bytes) == 0 ? bytes : throw new IOException($"BLKGETSIZE64 failed: {LibC.Describe(LibC.Errno)}");
            }
            LibC.Statx st;
            if (LibC.StatX(t.Fd, "", LibC.AT_EMPTY_PATH, LibC.STATX_SIZE, &st) != 0) throw new IOException($"statx failed: {LibC.Describe(LibC.Errno)}");
            return st.Size;
        }
        finally { if (added) t.Handle.DangerousRelease(); }
    }
}
