using VirtioSharp.Interop;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Memfds made once and handed out as fresh duplicates, so an input pays one fcntl per memfd instead of
/// memfd_create, ftruncate and F_ADD_SEALS. The n-th memfd of an input is the n-th file of the pool (files stay
/// distinct within an input, as fresh ones were), and every file an input used is zeroed before the next input, so
/// each input starts from the memory a fresh memfd has. Past the pool, memfds are made fresh.
/// </summary>
internal sealed unsafe class MemFdPool
{
    private const uint MfdAllowSealing = 2;
    private const int FAddSeals = 1033, FSealShrink = 2;
    private readonly (SafeFd Fd, MappedRegion Map)[] _files;
    private readonly string _name;
    private readonly ulong _size;
    private readonly bool _seal;
    private int _used;

    /// <summary>Makes <paramref name="count"/> files now: before the first descriptor census.</summary>
    public MemFdPool(string name, ulong size, bool seal, int count)
    {
        (_name, _size, _seal) = (name, size, seal);
        _files = new (SafeFd, MappedRegion)[count];
        for (int i = 0; i < count; i++)
        {
            var fd = Create();
            _files[i] = (fd, MappedRegion.Map(fd, size, 0));
        }
    }

    /// <summary>At the start of an input: what the previous one (and the back-end) wrote is gone.</summary>
    public void Reset()
    {
        for (int i = 0; i < _used; i++) new Span<byte>((void*)_files[i].Map.Address, (int)_size).Clear();
        _used = 0;
    }

    /// <summary>A descriptor of the next unused file: the caller owns it.</summary>
    public SafeFd Next() => _used < _files.Length ? CloexecDup.Of(_files[_used++].Fd) : Create();

    private SafeFd Create()
    {
        int fd = LibC.MemfdCreate(_name, LibC.MFD_CLOEXEC | (_seal ? MfdAllowSealing : 0));
        Invariant.That(fd >= 0, "memfd_create failed");
        var h = new SafeFd(fd);
        LibC.FTruncate(fd, (long)_size);
        if (_seal) LibC.Fcntl(fd, FAddSeals, FSealShrink);
        return h;
    }
}
