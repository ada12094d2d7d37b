using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using VirtioSharp.Devices.Block;
using VirtioSharp.Storage;

namespace VirtioSharp.Benchmarks;

/// <summary>
/// 4 KiB random reads from a 64 MiB tmpfs file through FileStorage, per aio mode, at queue depth 1 (submit, kick,
/// wait, reap, one request at a time) and 32 (the queue kept full). One op = one read (32 per invocation); the device's
/// side of the loop is what a virtqueue's owner thread does. Expected: 0 B allocated per op.
/// </summary>
[MemoryDiagnoser]
public unsafe class FileStorageBenchmarks
{
    private const int Block = 4096, Reads = 32;
    private const long FileSize = 64L << 20;

    /// <summary>I/O engine.</summary>
    [Params(FileAioMode.IoUring, FileAioMode.Threads, FileAioMode.Sync)]
    public FileAioMode Aio { get; set; }

    /// <summary>Requests in flight.</summary>
    [Params(1, 32)]
    public int QueueDepth { get; set; }

    private string _path = "";
    private FileStorage _storage = null!;
    private IBlockQueue _queue = null!;
    private byte* _buffers;
    private IoVec* _vecs;
    private ulong[] _offsets = [];
    private BlockCompletion[] _done = [];
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _path = $"/dev/shm/vs-bench-{Environment.ProcessId}.img";
        var chunk = new byte[1 << 20];
        new Random(1).NextBytes(chunk);
        using (var fs = new FileStream(_path, FileMode.Create))
            for (long i = 0; i < FileSize; i += chunk.Length) fs.Write(chunk);
        _storage = new FileStorage(new FileStorageOptions { Path = _path, Aio = Aio });
        _queue = _storage.OpenQueue(0, QueueDepth);
        _buffers = (byte*)NativeMemory.AlignedAlloc((nuint)(QueueDepth * Block), 4096);
        _vecs = (IoVec*)NativeMemory.Alloc((nuint)(QueueDepth * sizeof(IoVec)));
        for (int i = 0; i < QueueDepth; i++) _vecs[i] = new IoVec((nint)(_buffers + i * Block), Block);
        var rnd = new Random(2);
        _offsets = new ulong[4096];
        for (int i = 0; i < _offsets.Length; i++) _offsets[i] = (ulong)rnd.NextInt64(FileSize / Block) * Block;
        _done = new BlockCompletion[QueueDepth];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _queue.Dispose();
        _storage.Dispose();
        NativeMemory.AlignedFree(_buffers);
        NativeMemory.Free(_vecs);
        File.Delete(_path);
    }

    /// <summary>32 random 4 KiB reads, at most <see cref="QueueDepth"/> in flight; the buffer slot is the tag.</summary>
    [Benchmark(OperationsPerInvoke = Reads)]
    public int RandomRead4K()
    {
        int submitted = 0, completed = 0;
        // The first QueueDepth reads take slots 0..QD-1; each completion's slot is reused for the next read.
        for (; submitted < Math.Min(QueueDepth, Reads); submitted++) Submit(submitted);
        _queue.Kick();
        while (completed < Reads)
        {
            if (_queue.CompletionEvent != null) _queue.WaitForCompletions(1000);
            int n = _queue.Reap(_done);
            completed += n;
            int more = 0;
            for (int i = 0; i < n && submitted < Reads; i++, submitted++, more++) Submit((int)_done[i].Tag);
            if (more > 0) _queue.Kick();
        }
        return completed;
    }

    private void Submit(int slot)
    {
        ulong off = _offsets[_next++ & (_offsets.Length - 1)];
        _queue.Submit(new BlockRequest { Op = BlockOp.Read, Offset = off, Length = Block, Vectors = &_vecs[slot], VectorCount = 1, Tag = (ulong)slot });
    }
}
