using System.Runtime.InteropServices;

namespace VirtioSharp.Storage;

/// <summary>
/// Native memory aligned for O_DIRECT, allocated once (per queue or worker, never per request). No finalizer on
/// purpose: a buffer the kernel may still write to is leaked by simply not disposing it.
/// </summary>
internal sealed unsafe class AlignedBuffer : IDisposable
{
    public AlignedBuffer(nuint length, nuint alignment)
    {
        Length = length;
        Pointer = (byte*)NativeMemory.AlignedAlloc(length, Math.Max(alignment, 4096));
        new Span<byte>(Pointer, checked((int)length)).Clear();
    }

    public byte* Pointer { get; private set; }
    public nuint Length { get; }

    public void Dispose()
    {
        if (Pointer == null) return;
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}
