using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Storage;

/// <summary>
/// The opened image (regular file or block device) and what was learned about it at open; runs requests synchronously
/// (the sync queue, the threads queue's workers and the io_uring queue's helper). Shared by every queue of a storage,
/// which outlives them. Errors are returned as positive errno values, never thrown.
/// </summary>
internal sealed unsafe class FileTarget : IDisposable
{
    private const int ZeroBufferSize = 256 * 1024;
    private readonly AlignedBuffer? _zeros;
    private volatile bool _zeroRangeUnsupported;
    private int _lastWriteFlags;

    public FileTarget(SafeFd handle, string path, bool isBlockDevice, FileCacheMode cache, bool readOnly,
        uint memAlign, uint offsetAlign, FileStorageStats stats)
    {
        Handle = handle; Path = path; IsBlockDevice = isBlockDevice; Cache = cache; ReadOnly = readOnly;
        Direct = cache == FileCacheMode.None;
        MemAlign = Math.Max(memAlign, 1); OffsetAlign = Math.Max(offsetAlign, 1);
        Stats = stats;
        if (!readOnly) _zeros = new AlignedBuffer(ZeroBufferSize, MemAlign);
    }

    public SafeFd Handle { get; }
    /// <summary>The raw descriptor for the hot path; valid while the storage lives (it outlives its queues).</summary>
    public int Fd => Handle.Fd;
    public string Path { get; }
    public bool IsBlockDevice { get; }
    public FileCacheMode Cache { get; }
    public bool ReadOnly { get; }
    /// <summary>O_DIRECT: memory and offsets must be aligned (statx STATX_DIOALIGN, else the logical block size).</summary>
    public bool Direct { get; }
    public uint MemAlign { get; }
    public uint OffsetAlign { get; }
    /// <summary>Hole punching works here (probed at open): DISCARD and WRITE_ZEROES+UNMAP deallocate.</summary>
    public bool CanPunch { get; init; }
    /// <summary>
    /// A regular file on a file system whose pages live only in memory (tmpfs, ramfs, hugetlbfs; fstatfs at open): its
    /// reads and writes are copies that never wait for a device.
    /// </summary>
    public bool MemoryBacked { get; init; }
    public FileStorageStats Stats { get; }
    /// <summary>The RWF_* flags the last pwritev2 was called with (tests: what the kernel was really given).</summary>
    public int LastWriteFlags => Volatile.Read(ref _lastWriteFlags);
    /// <summary>fallocate(ZERO_RANGE) was refused once (tmpfs, NFS): go straight to writing zeros.</summary>
    public bool ZeroRangeUnsupported => _zeroRangeUnsupported;
    public void MarkZeroRangeUnsupported() => _zeroRangeUnsupported = true;

    /// <summary>RWF_* flags for a write: RWF_DSYNC for FUA unless the fd is O_DSYNC already or FUA is ignored (unsafe).</summary>
    public int WriteFlags(BlockRequestFlags flags)
    {
        if ((flags & BlockRequestFlags.Fua) == 0 || Cache is FileCacheMode.Writethrough or FileCacheMode.Unsafe) return 0;
        Interlocked.Increment(ref Stats.fuaWrites);
        return LibC.RWF_DSYNC;
    }

    /// <summary>The fallocate mode WRITE_ZEROES uses first: punch with UNMAP where punching works, else ZERO_RANGE.</summary>
    public int ZeroMode(BlockRequestFlags flags) =>
        (flags & BlockRequestFlags.Unmap) != 0 && CanPunch
            ? LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE
            : LibC.FALLOC_FL_ZERO_RANGE | LibC.FALLOC_FL_KEEP_SIZE;

    /// <summary>
    /// Errno a request fails with before any I/O (read-only, O_DIRECT offset not aligned), or 0. The device only sends
    /// ranges aligned to Info.LogicalBlockSize, which is at least <see cref="OffsetAlign"/>, so EINVAL means a device bug.
    /// </summary>
    public int Precheck(in BlockRequest r)
    {
        if (r.Op == BlockOp.Read || r.Op == BlockOp.Flush) return r.Op == BlockOp.Read ? AlignCheck(r) : 0;
        if (ReadOnly) return LibC.EROFS;
        return r.Op == BlockOp.Write ? AlignCheck(r) : 0;
    }

    private int AlignCheck(in BlockRequest r) =>
        Direct && ((r.Offset | r.Length) & (OffsetAlign - 1)) != 0 ? LibC.EINVAL : 0;

    /// <summary>
    /// O_DIRECT needs every vector's address aligned to the memory alignment and its length to the offset alignment
    /// (the kernel checks each segment, iov_iter_is_aligned); otherwise the request is copied through a bounce buffer.
    /// </summary>
    public bool NeedsBounce(in BlockRequest r)
    {
        if (!Direct || (r.Op != BlockOp.Read && r.Op != BlockOp.Write)) return false;
        nuint memMask = MemAlign - 1, lenMask = OffsetAlign - 1;
        for (int i = 0; i < r.VectorCount; i++)
            if (((nuint)r.Vectors[i].Base & memMask) != 0 || (r.Vectors[i].Length & lenMask) != 0) return true;
        return false;
    }

    /// <summary>
    /// Runs <paramref name="r"/> from byte <paramref name="resume"/> on (a transfer the io_uring queue started and the
    /// kernel cut short). <paramref name="bounce"/> is the caller's aligned buffer, used when <paramref name="bounced"/>.
    /// </summary>
    public int Execute(in BlockRequest r, bool bounced, ulong resume, AlignedBuffer? bounce)
    {
        int e = Precheck(r);
        if (e != 0) return e;
        switch (r.Op)
        {
            case BlockOp.Read:
                return bounced && bounce != null ? BounceRead(r, resume, bounce) : ReadVectors(r, resume);
            case BlockOp.Write:
                return bounced && bounce != null ? BounceWrite(r, resume, bounce) : WriteVectors(r, resume);
            case BlockOp.Flush: return Flush();
            case BlockOp.Discard: return Discard(r.Offset, r.Length);
            case BlockOp.WriteZeroes: return WriteZeroes(r.Offset, r.Length, r.Flags);
            default: return BlockCompletion.NotSupported;
        }
    }

    public int Flush()
    {
        if (Cache == FileCacheMode.Unsafe) { Interlocked.Increment(ref Stats.flushesIgnored); return 0; }
        Interlocked.Increment(ref Stats.flushes);
        while (LibC.FDataSync(Fd) != 0)
            if (LibC.Errno != LibC.EINTR) return LibC.Errno;
        return 0;
    }

    public int Discard(ulong offset, ulong length)
    {
        if (length == 0) return 0;
        if (IsBlockDevice)
        {
            // BLKDISCARD takes {start, length} in bytes (linux/fs.h); the range must be sector aligned.
            ulong* range = stackalloc ulong[2] { offset, length };
            return LibC.Ioctl(Fd, LibC.BLKDISCARD, range) == 0 ? 0 : LibC.Errno;
        }
        return FAllocate(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    public int WriteZeroes(ulong offset, ulong length, BlockRequestFlags flags)
    {
        if (length == 0) return 0;
        int mode = ZeroMode(flags);
        if ((mode & LibC.FALLOC_FL_PUNCH_HOLE) != 0)
        {
            // A punched range reads back as zeros (fallocate(2)); on a block device it is a zero-out that may unmap.
            int e = FAllocate(mode, offset, length);
            if (e != LibC.EOPNOTSUPP) return e;
            mode = LibC.FALLOC_FL_ZERO_RANGE | LibC.FALLOC_FL_KEEP_SIZE;
        }
        if (!ZeroRangeUnsupported)
        {
            // KEEP_SIZE: a file shrunk under us is not grown back by zeroing past its end.
            int e = FAllocate(mode, offset, length);
            if (e != LibC.EOPNOTSUPP) return e;
            MarkZeroRangeUnsupported();
        }
        if (IsBlockDevice)
        {
            ulong* range = stackalloc ulong[2] { offset, length };
            if (LibC.Ioctl(Fd, LibC.BLKZEROOUT, range) == 0) return 0;
        }
        Interlocked.Increment(ref Stats.zeroWriteFallbacks);
        return WriteZeroBuffer(offset, length);
    }

    private int WriteZeroBuffer(ulong offset, ulong length)
    {
        if (_zeros == null) return LibC.EROFS;
        while (length > 0)
        {
            nuint n = (nuint)Math.Min(length, (ulong)_zeros.Length);
            int e = PWriteAll(_zeros.Pointer, n, offset, 0);
            if (e != 0) return e;
            offset += n; length -= n;
        }
        return 0;
    }

    private int FAllocate(int mode, ulong offset, ulong length)
    {
        while (LibC.FAllocate(Fd, mode, (long)offset, (long)length) != 0)
            if (LibC.Errno != LibC.EINTR) return LibC.Errno;
        return 0;
    }

    private int ReadVectors(in BlockRequest r, ulong start)
    {
        if (start == 0 && r.VectorCount > 0)
        {
            nint n;
            do n = LibC.PReadV2(Fd, (LibC.IoVec*)r.Vectors, r.VectorCount, (long)r.Offset, 0);
            while (n < 0 && LibC.Errno == LibC.EINTR);
            if (n < 0) return LibC.Errno;
            if ((ulong)n == r.Length) return 0;
            start = (ulong)n;
        }
        // Short: go on piece by piece from where it stopped; 0 bytes is the end of the file.
        ulong pos = 0;
        for (int i = 0; i < r.VectorCount; i++)
        {
            var v = r.Vectors[i];
            ulong end = pos + v.Length;
            while (start < end)
            {
                // O_DIRECT cannot resume at an unaligned offset; a short O_DIRECT read only happens at the end of file.
                if (Direct && (start & (OffsetAlign - 1)) != 0) return ZeroFill(r, start);
                ulong skip = start - pos;
                nint k = LibC.PRead(Fd, (byte*)v.Base + skip, (nuint)(v.Length - skip), (long)(r.Offset + start));
                if (k < 0) { if (LibC.Errno == LibC.EINTR) continue; return LibC.Errno; }
                if (k == 0) return ZeroFill(r, start);
                start += (ulong)k;
            }
            pos = end;
        }
        return 0;
    }

    /// <summary>
    /// The file ended before the request did (someone shrank it): the rest reads as zeros, as for a sparse tail, rather
    /// than stale guest memory (QEMU's file-posix does the same for short reads).
    /// </summary>
    private int ZeroFill(in BlockRequest r, ulong from)
    {
        Interlocked.Increment(ref Stats.eofZeroFills);
        ulong pos = 0;
        for (int i = 0; i < r.VectorCount; i++)
        {
            var v = r.Vectors[i];
            ulong end = pos + v.Length;
            if (end > from)
            {
                ulong skip = from > pos ? from - pos : 0;
                new Span<byte>((byte*)v.Base + skip, checked((int)(v.Length - skip))).Clear();
            }
            pos = end;
        }
        return 0;
    }

    private int WriteVectors(in BlockRequest r, ulong start)
    {
        int flags = WriteFlags(r.Flags);
        if (start == 0 && r.VectorCount > 0)
        {
            nint n;
            _lastWriteFlags = flags;
            do n = LibC.PWriteV2(Fd, (LibC.IoVec*)r.Vectors, r.VectorCount, (long)r.Offset, flags);
            while (n < 0 && LibC.Errno == LibC.EINTR);
            if (n < 0) return LibC.Errno;
            if ((ulong)n == r.Length) return 0;
            start = (ulong)n;
        }
        ulong pos = 0;
        for (int i = 0; i < r.VectorCount; i++)
        {
            var v = r.Vectors[i];
            ulong end = pos + v.Length;
            if (start < end)
            {
                if (Direct && (start & (OffsetAlign - 1)) != 0) return LibC.EIO;
                ulong skip = start - pos;
                int e = PWriteAll((byte*)v.Base + skip, (nuint)(v.Length - skip), r.Offset + start, flags);
                if (e != 0) return e;
                start = end;
            }
            pos = end;
        }
        return 0;
    }

    private int PWriteAll(byte* p, nuint n, ulong offset, int flags)
    {
        while (n > 0)
        {
            var iov = new LibC.IoVec { Base = p, Len = n };
            _lastWriteFlags = flags;
            nint k = LibC.PWriteV2(Fd, &iov, 1, (long)offset, flags);
            if (k < 0) { if (LibC.Errno == LibC.EINTR) continue; return LibC.Errno; }
            if (k == 0) return LibC.ENOSPC;   // a write that makes no progress: the device is full
            p += k; n -= (nuint)k; offset += (ulong)k;
        }
        return 0;
    }

    private int BounceRead(in BlockRequest r, ulong start, AlignedBuffer bounce)
    {
        Interlocked.Add(ref Stats.bouncedBytes, (long)(r.Length - start));
        ulong chunk = (ulong)bounce.Length & ~(ulong)(OffsetAlign - 1);
        for (ulong pos = start; pos < r.Length;)
        {
            if ((pos & (OffsetAlign - 1)) != 0) return ZeroFill(r, pos);
            nuint n = (nuint)Math.Min(chunk, r.Length - pos);
            nint k;
            do k = LibC.PRead(Fd, bounce.Pointer, n, (long)(r.Offset + pos));
            while (k < 0 && LibC.Errno == LibC.EINTR);
            if (k < 0) return LibC.Errno;
            Copy(r, pos, bounce.Pointer, (ulong)k, toVectors: true);
            if ((nuint)k < n) return ZeroFill(r, pos + (ulong)k);
            pos += n;
        }
        return 0;
    }

    private int BounceWrite(in BlockRequest r, ulong start, AlignedBuffer bounce)
    {
        Interlocked.Add(ref Stats.bouncedBytes, (long)(r.Length - start));
        int flags = WriteFlags(r.Flags);
        ulong chunk = (ulong)bounce.Length & ~(ulong)(OffsetAlign - 1);
        for (ulong pos = start; pos < r.Length;)
        {
            if ((pos & (OffsetAlign - 1)) != 0) return LibC.EIO;
            nuint n = (nuint)Math.Min(chunk, r.Length - pos);
            Copy(r, pos, bounce.Pointer, n, toVectors: false);
            int e = PWriteAll(bounce.Pointer, n, r.Offset + pos, flags);
            if (e != 0) return e;
            pos += n;
        }
        return 0;
    }

    /// <summary>Copies <paramref name="count"/> bytes between the request's vectors (from byte <paramref name="at"/>) and <paramref name="buf"/>.</summary>
    private static void Copy(in BlockRequest r, ulong at, byte* buf, ulong count, bool toVectors)
    {
        ulong pos = 0;
        for (int i = 0; i < r.VectorCount && count > 0; i++)
        {
            var v = r.Vectors[i];
            ulong end = pos + v.Length;
            if (end > at)
            {
                ulong skip = at - pos;
                ulong n = Math.Min(v.Length - skip, count);
                byte* p = (byte*)v.Base + skip;
                if (toVectors) Buffer.MemoryCopy(buf, p, n, n);
                else Buffer.MemoryCopy(p, buf, n, n);
                buf += n; count -= n; at += n;
            }
            pos = end;
        }
    }

    public void Dispose()
    {
        _zeros?.Dispose();
        Handle.Dispose();
    }
}
