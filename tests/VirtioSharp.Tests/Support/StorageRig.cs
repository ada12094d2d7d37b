using System.Diagnostics;
using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;
using VirtioSharp.Storage;

namespace VirtioSharp.Tests.Support;

/// <summary>Native memory for request data and iovec arrays, page aligned plus an optional skew (to break O_DIRECT alignment).</summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    private readonly byte* _base;

    public NativeBuffer(int length, int skew = 0)
    {
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)(length + skew + 4096), 4096);
        Pointer = _base + skew;
        Length = length;
        Span.Clear();
    }

    public byte* Pointer { get; }
    public int Length { get; }
    public Span<byte> Span => new(Pointer, Length);

    public void Dispose() => NativeMemory.AlignedFree(_base);
}

/// <summary>Files on chosen file systems, requests over native buffers, and a loop that drives a queue to completion.</summary>
internal static unsafe class StorageRig
{
    /// <summary>ext4 on this machine's root disk (O_DIRECT, punching, ZERO_RANGE all work).</summary>
    public const string Ext4Dir = "/var/tmp";
    /// <summary>tmpfs: punching works, ZERO_RANGE does not (shmem_fallocate).</summary>
    public const string TmpfsDir = "/dev/shm";

    public static string NewFile(string dir, long size, byte fill = 0)
    {
        string path = Path.Combine(dir, $"vs-storage-{Guid.NewGuid():N}.img");
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite);
        if (fill != 0)
        {
            var chunk = new byte[64 * 1024];
            chunk.AsSpan().Fill(fill);
            for (long done = 0; done < size; done += chunk.Length) fs.Write(chunk, 0, (int)Math.Min(chunk.Length, size - done));
        }
        fs.SetLength(size);
        fs.Flush(true);
        return path;
    }

    public static void Delete(string path)
    {
        try { File.Delete(path); } catch (IOException) { }
    }

    /// <summary>
    /// Opens <paramref name="path"/>; io_uring on tmpfs goes through the ring unless <paramref name="inline"/> (the
    /// product's default is inline there, FileStorageOptions.InlineMemoryBacked; these tests mean the ring).
    /// </summary>
    public static FileStorage Open(string path, FileAioMode aio, FileCacheMode cache = FileCacheMode.Writeback, bool readOnly = false, bool inline = false) =>
        new(new FileStorageOptions { Path = path, Aio = aio, Cache = cache, ReadOnly = readOnly, InlineMemoryBacked = inline });

    /// <summary>A request over <paramref name="vecs"/> (native IoVec array of <paramref name="count"/> entries).</summary>
    public static BlockRequest Rw(BlockOp op, ulong offset, IoVec* vecs, int count, ulong tag, BlockRequestFlags flags = 0)
    {
        ulong len = 0;
        for (int i = 0; i < count; i++) len += vecs[i].Length;
        return new BlockRequest { Op = op, Offset = offset, Length = len, Vectors = vecs, VectorCount = count, Tag = tag, Flags = flags };
    }

    public static BlockRequest Range(BlockOp op, ulong offset, ulong length, ulong tag, BlockRequestFlags flags = 0) =>
        new() { Op = op, Offset = offset, Length = length, Tag = tag, Flags = flags };

    /// <summary>Submits every request (at most the queue's depth at once), kicks, and waits for all; returns the completions in arrival order.</summary>
    public static List<BlockCompletion> RunAll(IBlockQueue q, ReadOnlySpan<BlockRequest> requests, int timeoutMs = 20_000)
    {
        var done = new List<BlockCompletion>();
        Span<BlockCompletion> buf = stackalloc BlockCompletion[32];
        int next = 0, inFlight = 0;
        var sw = Stopwatch.StartNew();
        while (done.Count < requests.Length)
        {
            int before = next;
            while (next < requests.Length && inFlight < q.Depth) { q.Submit(requests[next++]); inFlight++; }
            if (next > before) q.Kick();
            if (q.CompletionEvent != null && !q.WaitForCompletions(200))
            {
                if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"{done.Count}/{requests.Length} completed");
                continue;
            }
            int n = q.Reap(buf);
            for (int i = 0; i < n; i++) done.Add(buf[i]);
            inFlight -= n;
            if (sw.ElapsedMilliseconds > timeoutMs) throw new TimeoutException($"{done.Count}/{requests.Length} completed");
        }
        return done;
    }

    /// <summary>Runs one request; returns its errno.</summary>
    public static int Run(IBlockQueue q, in BlockRequest r)
    {
        var c = RunAll(q, [r]);
        Assert.Equal(r.Tag, c[0].Tag);
        return c[0].Error;
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> through the queue.</summary>
    public static byte[] Read(IBlockQueue q, ulong offset, int length, int skew = 0)
    {
        using var buf = new NativeBuffer(length, skew);
        buf.Span.Fill(0xEE);   // stale memory must not survive a read
        var v = new IoVec((nint)buf.Pointer, (nuint)length);
        Assert.Equal(0, Run(q, Rw(BlockOp.Read, offset, &v, 1, 1)));
        return buf.Span.ToArray();
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/> through the queue; returns the errno.</summary>
    public static int Write(IBlockQueue q, ulong offset, ReadOnlySpan<byte> data, int skew = 0, BlockRequestFlags flags = 0)
    {
        using var buf = new NativeBuffer(data.Length, skew);
        data.CopyTo(buf.Span);
        var v = new IoVec((nint)buf.Pointer, (nuint)data.Length);
        return Run(q, Rw(BlockOp.Write, offset, &v, 1, 2, flags));
    }

    /// <summary>True if [offset, offset+length) is one hole as lseek(SEEK_HOLE/SEEK_DATA) sees it.</summary>
    public static bool IsHole(string path, long offset, long length)
    {
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int fd = (int)h.DangerousGetHandle();
        long hole = LibC.LSeek(fd, offset, LibC.SEEK_HOLE);
        if (hole != offset) return false;
        long data = LibC.LSeek(fd, offset, LibC.SEEK_DATA);
        return data < 0 || data >= offset + length;   // ENXIO: no data after offset at all
    }

    /// <summary>Bytes allocated to the file (st_blocks × 512).</summary>
    public static long Allocated(string path)
    {
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        LibC.Statx st;
        Assert.Equal(0, LibC.StatX((int)h.DangerousGetHandle(), "", LibC.AT_EMPTY_PATH, LibC.STATX_BLOCKS, &st));
        return (long)st.Blocks * 512;
    }

    /// <summary>The open flags of this process's descriptor <paramref name="fd"/> (/proc/self/fdinfo, octal).</summary>
    public static int OpenFlags(int fd)
    {
        foreach (var line in File.ReadAllLines($"/proc/self/fdinfo/{fd}"))
            if (line.StartsWith("flags:", StringComparison.Ordinal)) return Convert.ToInt32(line[6..].Trim(), 8);
        throw new InvalidOperationException("no flags line");
    }

    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }
}
