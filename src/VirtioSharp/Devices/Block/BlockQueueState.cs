using VirtioSharp.Memory;

namespace VirtioSharp.Devices.Block;

/// <summary>A <see cref="BlockDevice{TMem}"/> queue's own state; touched only on that queue's owner thread.</summary>
internal sealed class BlockQueueState<TMem> where TMem : struct, IDeviceMemory
{
    public BlockQueueState(int slots, CompletionDelayInjection? injection)
    {
        Slots = new BlockSlot<TMem>[slots];
        Free = new int[slots];
        for (int i = 0; i < slots; i++) { Free[i] = slots - 1 - i; Slots[i].FenceToken = -1; }
        FreeCount = slots;
        Service = new QueueService<TMem>((ushort)Math.Min(slots, ushort.MaxValue), injection);
    }

    public readonly BlockSlot<TMem>[] Slots;
    public readonly int[] Free;
    public int FreeCount;
    public readonly QueueService<TMem> Service;
    public readonly BlockDeviceStats Stats = new();
    public readonly BlockCompletion[] Reaped = new BlockCompletion[64];
    /// <summary>The storage channel, opened by the first notify of an activation.</summary>
    public IBlockQueue? Io;
    public IDisposable? Source;
    /// <summary>The host has no fd loop (the simulated machine): completions are polled with a timer instead.</summary>
    public bool Polling;
    /// <summary>Storage requests submitted and not reaped.</summary>
    public int IoInFlight;
    /// <summary>The loop stopped because the storage was full: serve the ring again once completions free room.</summary>
    public bool Blocked;
    public Action? OnReadable;
}
