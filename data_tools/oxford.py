"""Facts about the Oxford-IIIT Pet dataset that its loaders and the synthetic twin share."""

# (name, species) in class-id order: class id = index + 1. Species 1 = cat, 2 = dog; cat
# names start upper-case, dog names lower-case. Breed id counts within a species.
BREEDS = (
    ("Abyssinian", 1), ("american_bulldog", 2), ("american_pit_bull_terrier", 2),
    ("basset_hound", 2), ("beagle", 2), ("Bengal", 1), ("Birman", 1), ("Bombay", 1),
    ("boxer", 2), ("British_Shorthair", 1), ("chihuahua", 2), ("Egyptian_Mau", 1),
    ("english_cocker_spaniel", 2), ("english_setter", 2), ("german_shorthaired", 2),
    ("great_pyrenees", 2), ("havanese", 2), ("japanese_chin", 2), ("keeshond", 2),
    ("leonberger", 2), ("Maine_Coon", 1), ("miniature_pinscher", 2), ("newfoundland", 2),
    ("Persian", 1), ("pomeranian", 2), ("pug", 2), ("Ragdoll", 1), ("Russian_Blue", 1),
    ("saint_bernard", 2), ("samoyed", 2), ("scottish_terrier", 2), ("shiba_inu", 2),
    ("Siamese", 1), ("Sphynx", 1), ("staffordshire_bull_terrier", 2), ("wheaten_terrier", 2),
    ("yorkshire_terrier", 2),
)

LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

# Trimap pixel values.
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3


def breed_table():
  """{breed name: (class id, species, breed id)}."""
  table, per_species = {}, {1: 0, 2: 0}
  for index, (name, species) in enumerate(BREEDS):
    per_species[species] += 1
    table[name] = (index + 1, species, per_species[species])
  return table


def breed_of(pet_id):
  """'american_bulldog_8' -> 'american_bulldog'."""
  return pet_id.rsplit("_", 1)[0]


def species_of(pet_id):
  """1 (cat) when the name starts upper-case, else 2 (dog): the dataset's own convention."""
  return 1 if pet_id[:1].isupper() else 2
