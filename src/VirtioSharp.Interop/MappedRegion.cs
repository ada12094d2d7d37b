using System.Runtime.InteropServices;

namespace VirtioSharp.Interop;

/// <summary>A shared mapping of (part of) a file descriptor, unmapped when disposed.</summary>
internal sealed class MappedRegion : SafeHandle
{
    private MappedRegion(nint addr, nuint length) : base(-1, true)
    {
        SetHandle(addr);
        Length = length;
    }

    public override bool IsInvalid => handle == -1 || handle == 0;
    public nuint Length { get; }
    public nint Address => handle;

    protected override bool ReleaseHandle() => LibC.Munmap(handle, Length) == 0;

    /// <summary>mmap(fd, length, offset) read/write shared; throws with errno on failure.</summary>
    public static MappedRegion Map(SafeFd fd, ulong length, ulong offset)
    {
        if (length == 0 || length > nuint.MaxValue) throw new ArgumentOutOfRangeException(nameof(length));
        if (offset > long.MaxValue) throw new ArgumentOutOfRangeException(nameof(offset));
        bool added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            nint p = LibC.Mmap(0, (nuint)length, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, fd.Fd, (long)offset);
            if (p == -1) throw new IOException($"mmap of {length} bytes at offset {offset} failed: {LibC.Describe(LibC.Errno)}");
            return new MappedRegion(p, (nuint)length);
        }
        finally
        {
            if (added) fd.DangerousRelease();
        }
    }
}
