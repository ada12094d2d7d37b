using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices.Net;

/// <summary>A <see cref="NetDevice{TMem}"/> queue's own state; touched only on that queue's owner thread.</summary>
internal sealed class NetQueueState<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>Host vectors one frame may take before it goes through the copy buffer instead.</summary>
    public const int MaxVectors = 256;

    public NetQueueState(int queueSize)
    {
        Stash = new DescriptorChain[Math.Max(queueSize, 1)];
        Use = new DescriptorChain[Stash.Length];
        Lengths = new uint[Stash.Length];
    }

    public readonly NetQueueCounters Counters = new();
    /// <summary>Pinned: the port reads or writes through these host addresses (never grows past <see cref="MaxVectors"/>).</summary>
    public readonly IoVec[] Vectors = GC.AllocateArray<IoVec>(MaxVectors, pinned: true);
    /// <summary>Pinned frame buffer for address spaces that only copy (the simulated bus); allocated on first need.</summary>
    public byte[]? Copy;

    // Receive: chains popped and not used yet, oldest first (they are always the queue's newest pops).
    public readonly DescriptorChain[] Stash;
    public int StashHead, StashCount;
    public ulong StashBytes;
    /// <summary>The queue the stash belongs to; a ring that restarted has a new one.</summary>
    public DeviceQueue<TMem>? StashQueue;
    public readonly DescriptorChain[] Use;
    public readonly uint[] Lengths;
    /// <summary>The port's readable fd, polled while the queue has buffers.</summary>
    public IDisposable? Source;
    public Action? OnReadable;

    public DescriptorChain StashAt(int i) => Stash[(StashHead + i) % Stash.Length];

    public void Push(DescriptorChain c)
    {
        Stash[(StashHead + StashCount) % Stash.Length] = c;
        StashCount++;
        StashBytes += c.WritableBytes;
    }

    /// <summary>Takes the oldest <paramref name="n"/> stashed chains into <see cref="Use"/>.</summary>
    public void TakeFront(int n)
    {
        for (int i = 0; i < n; i++)
        {
            var c = Stash[StashHead];
            Stash[StashHead] = null!;
            StashHead = (StashHead + 1) % Stash.Length;
            StashBytes -= c.WritableBytes;
            Use[i] = c;
        }
        StashCount -= n;
    }

    public void ForgetStash()
    {
        Array.Clear(Stash);
        StashHead = StashCount = 0;
        StashBytes = 0;
        StashQueue = null;
    }

    public byte[] CopyBuffer(int bytes) =>
        Copy is { } c && c.Length >= bytes ? c : Copy = GC.AllocateUninitializedArray<byte>(bytes, pinned: true);
}
