namespace VirtioSharp.Net.Switch;

/// <summary>
/// The switch's frame buffers: a fixed number of slots of one frame each in one pinned array allocated once, handed
/// out and taken back by index, with a reference count so a flooded frame is copied once and shared by every port
/// queue it waits in. No allocation after construction.
/// </summary>
internal sealed class FramePool
{
    private readonly byte[] _memory;
    private readonly int[] _refs, _lengths, _free;
    private readonly Lock _lock = new();
    private int _freeCount;

    public FramePool(int slots, int slotSize)
    {
        if ((long)slots * slotSize > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(slots), $"{slots} frame buffers of {slotSize} bytes do not fit one array; lower the queue length or the MTU");
        SlotSize = slotSize;
        _memory = GC.AllocateUninitializedArray<byte>(slots * slotSize, pinned: true);
        _refs = new int[slots];
        _lengths = new int[slots];
        _free = new int[slots];
        for (int i = 0; i < slots; i++) _free[i] = slots - 1 - i;
        _freeCount = slots;
    }

    public int SlotSize { get; }
    public int Slots => _free.Length;
    public int Free { get { lock (_lock) return _freeCount; } }

    /// <summary>A free slot holding one reference (the caller's), or false when all are in use.</summary>
    public bool TryRent(out int slot)
    {
        lock (_lock)
        {
            if (_freeCount == 0) { slot = -1; return false; }
            slot = _free[--_freeCount];
        }
        _refs[slot] = 1;
        return true;
    }

    /// <summary>The slot's bytes (its whole size; <see cref="Length"/> says how many hold the frame).</summary>
    public Span<byte> Buffer(int slot) => _memory.AsSpan(slot * SlotSize, SlotSize);

    /// <summary>The frame's length in the slot.</summary>
    public ref int Length(int slot) => ref _lengths[slot];

    public void AddRef(int slot) => Interlocked.Increment(ref _refs[slot]);

    /// <summary>Drops one reference; the last one returns the slot.</summary>
    public void Release(int slot)
    {
        if (Interlocked.Decrement(ref _refs[slot]) != 0) return;
        lock (_lock) _free[_freeCount++] = slot;
    }
}
